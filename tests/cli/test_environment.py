"""Environment variables standing in for flags (capsa.cli.environment): one
table, Apptainer's rule for booleans and for the two prefixes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from capsa.cli import environment
from capsa.errors import UsageError
from support.cli import Capsa
from support.env import SCRATCH
from support.images import build_all


@pytest.fixture(scope="module")
def sif() -> Path:
    import tempfile

    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="envflags-", dir=SCRATCH))
    base.chmod(0o755)
    return build_all(base / "img")["sif"]


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_true(text: str) -> None:
    assert environment.truth("APPTAINER_X", text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_false(text: str) -> None:
    assert environment.truth("APPTAINER_X", text) is False


@pytest.mark.parametrize("text", ["off", "on", "y", "yes", "no", "2", "tRuE"])
def test_anything_else_is_an_error_naming_the_variable(text: str) -> None:
    with pytest.raises(UsageError, match="APPTAINER_X"):
        environment.truth("APPTAINER_X", text)


def _args(**values: object) -> argparse.Namespace:
    defaults: dict[str, object] = {"contain": False, "bind": [], "mount": [], "hostname": None,
                                   "pwd": None, "no_env": []}
    defaults.update(values)
    return argparse.Namespace(**defaults)


def test_unset_flags_take_the_variables() -> None:
    args = _args(bind=["/a"])
    environment.apply(args, "exec", {
        "APPTAINER_CONTAIN": "1", "APPTAINER_BINDPATH": "/b,/c:/d",
        "APPTAINER_MOUNT": "type=bind,src=/e,dst=/f\n\ntype=bind,src=/g,dst=/h",
        "APPTAINER_HOSTNAME": "inside", "APPTAINER_TARGET_PWD": "/work",
        "APPTAINER_NOENV": "A, B"})
    assert args.contain is True
    assert args.bind == ["/a", "/b,/c:/d"]  # the flag's own first, as Apptainer appends
    assert args.mount == ["type=bind,src=/e,dst=/f", "type=bind,src=/g,dst=/h"]
    assert (args.hostname, args.pwd, args.no_env) == ("inside", "/work", ["A", "B"])


def test_the_command_line_wins() -> None:
    args = _args(hostname="mine", contain=True)
    environment.apply(args, "exec", {"APPTAINER_HOSTNAME": "theirs",
                                     "APPTAINER_CONTAIN": "false"})
    assert (args.hostname, args.contain) == ("mine", True)


def test_spaces_only_count_as_unset() -> None:
    args = _args()
    environment.apply(args, "exec", {"APPTAINER_HOSTNAME": "  ", "APPTAINER_CONTAIN": " "})
    assert (args.hostname, args.contain) == (None, False)


def test_apptainer_prefix_first_then_the_legacy_one(reports: list[tuple[int, str, str]]) -> None:
    from capsa.cli import log

    log.setup(log.DEBUG, colour=False)
    assert environment.lookup({"SINGULARITY_X": "a"}, ("X",)) == ("SINGULARITY_X", "a")
    assert environment.lookup({"SINGULARITY_X": "a", "APPTAINER_X": "b"}, ("X",)) == (
        "APPTAINER_X", "b")
    assert environment.lookup({"X": "c"}, ("X",)) is None
    assert environment.lookup({"X": "c"}, ("X",), without_prefix=True) == ("X", "c")


def test_instance_subcommands_other_than_start_are_left_alone() -> None:
    args = argparse.Namespace(action="stop", force=False, user=None)
    environment.apply(args, "instance", {"APPTAINER_FORCE": "1"})
    assert args.force is False


def test_bad_boolean_is_one_fatal(any_capsa: Capsa, sif: Path) -> None:
    for name in ("APPTAINER_DEBUG", "APPTAINER_CONTAINALL"):
        result = any_capsa("exec", str(sif), "true", env={name: "off"})
        assert result.returncode == 255, result
        assert result.stderr.startswith("FATAL:   While parsing environment variables: "
                                        f"{name}='off'"), result
        assert result.stderr.count("\n") == 1


def test_variables_act_as_flags(any_capsa: Capsa, sif: Path, scratch: Path) -> None:
    (scratch / "seen").write_text("bound\n")
    contained = any_capsa("exec", str(sif), "sh", "-c", "echo $$; cat /mnt/seen",
                          env={"APPTAINER_CONTAINALL": "true",
                               "SINGULARITY_BIND": f"{scratch}:/mnt"})
    assert contained.returncode == 0, contained
    # --containall: a PID namespace with an init as PID 1, so the shell is 2
    assert contained.stdout.split() == ["2", "bound"]
    assert ("INFO:    Environment variable SINGULARITY_BIND is set, but APPTAINER_BIND is "
            "preferred") in contained.stderr
    debug = any_capsa("exec", "--pwd", "/nowhere", str(sif), "true",
                      env={"SINGULARITY_DEBUG": "1"})
    assert ("INFO:    Environment variable SINGULARITY_DEBUG is set, but APPTAINER_DEBUG is "
            "preferred") in debug.stderr, debug
