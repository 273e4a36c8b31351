"""Apptainer's global flags (-d, -q, -s, -v, --nocolor) are accepted among a
command's own flags too, as its persistent flags are; a letter the command
uses itself stays the command's (``exec -s`` is ``--shell``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa
from support.images import build_all
from support.site import site_env

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="module")
def sif(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import os
    import shutil
    import tempfile

    from support.env import SCRATCH

    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="flags-", dir=SCRATCH))
    os.chmod(base, 0o755)
    yield build_all(base / "img")["sif"]
    shutil.rmtree(base, ignore_errors=True)


_INFO = "INFO:    Setting --net (required by --network)\n"


@pytest.mark.parametrize("flag", ["-q", "--quiet", "-s", "--silent"])
def test_quiet_flags_after_the_command(capsa: Capsa, sif: Path, flag: str) -> None:
    loud = capsa("exec", "--network", "none", str(sif), "true")
    assert (loud.returncode, loud.stderr) == (0, _INFO), loud
    args = ("exec", flag, "--network", "none", str(sif), "true")
    if flag == "-s":  # exec's own -s is --shell: the letter stays the command's
        result = capsa("shell", "-s", "/bin/true", str(sif))
        assert (result.returncode, result.stderr) == (0, ""), result
        return
    result = capsa(*args)
    assert (result.returncode, result.stderr) == (0, ""), result


def test_global_flags_anywhere_as_each_user(any_capsa: Capsa, sif: Path) -> None:
    for args in (("exec", "-q", "--network", "none", str(sif), "true"),
                 ("exec", "--network", "none", "--quiet", str(sif), "true"),
                 ("-q", "exec", "--network", "none", str(sif), "true")):
        result = any_capsa(*args)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result
    # without overlayfs (a site without it) the launcher says so at debug level
    debug = any_capsa("exec", "-d", "--nocolor", str(sif), "true",
                      env=site_env(overlay=False))
    assert debug.returncode == 0, debug
    assert "DEBUG    overlay disabled" in debug.stderr, debug
    verbose = any_capsa("instance", "list", "-v", "--json")
    assert verbose.returncode == 0, verbose


def test_flags_after_the_image_belong_to_the_command(any_capsa: Capsa, sif: Path) -> None:
    result = any_capsa("exec", str(sif), "echo", "-q", "-d")
    assert (result.returncode, result.stdout, result.stderr) == (0, "-q -d\n", ""), result


def test_unknown_flag_after_the_command_is_fatal(any_capsa: Capsa, sif: Path) -> None:
    result = any_capsa("exec", "--bogus", str(sif), "true")
    assert result.returncode == 255
    assert result.stderr.startswith("FATAL:   unrecognized arguments: --bogus"), result
