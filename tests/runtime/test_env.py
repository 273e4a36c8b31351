"""Unit tests: which variables enter the container, and the env-script parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsa import report
from capsa.errors import NotFoundError, UsageError
from capsa.runtime import env


def test_host_passthrough_drops_the_reserved_names() -> None:
    host = {"PATH": "/x", "HOME": "/h", "LD_LIBRARY_PATH": "/l", "APPTAINER_BIND": "/a",
            "SINGULARITY_X": "1", "APPTAINERENV_Y": "2", "FOO": "bar", "TERM": "xterm"}
    assert env.host_passthrough(host, cleanenv=False) == {"FOO": "bar", "TERM": "xterm"}


def test_cleanenv_keeps_term_and_proxies() -> None:
    host = {"FOO": "bar", "TERM": "xterm", "http_proxy": "p", "HTTPS_PROXY": "q", "LANG": "x"}
    assert env.host_passthrough(host, cleanenv=True) == {
        "TERM": "xterm", "http_proxy": "p", "HTTPS_PROXY": "q", "LANG": "C"}


def test_cleanenv_keeps_what_a_rank_needs_from_its_launcher() -> None:
    host = {"SLURM_JOB_ID": "7", "PMIX_NAMESPACE": "slurm.pmix.7.0", "PMI_FD": "3",
            "OMPI_COMM_WORLD_RANK": "1", "SLURMISH": "no", "FOO": "bar"}
    assert env.host_passthrough(host, cleanenv=True) == {
        "SLURM_JOB_ID": "7", "PMIX_NAMESPACE": "slurm.pmix.7.0", "PMI_FD": "3",
        "OMPI_COMM_WORLD_RANK": "1", "LANG": "C"}
    assert "SLURM_JOB_ID" not in env.host_passthrough(host, cleanenv=True,
                                                       blocked=["SLURM_JOB_ID"])


def test_injected_prefixes_and_precedence(reports: list[tuple[int, str, str]]) -> None:
    host = {"SINGULARITYENV_A": "old", "APPTAINERENV_A": "new", "SINGULARITYENV_B": "b",
            "APPTAINERENV_C": "c"}
    result = env.injected(host, [], ["C=flag", "D=1,E=2"])
    assert result == {"A": "new", "B": "b", "C": "flag", "D": "1", "E": "2"}
    assert any(level == report.WARNING and "SINGULARITYENV_A" in message
               for level, _, message in reports)


def test_plain_singularityenv_gives_no_warning(reports: list[tuple[int, str, str]]) -> None:
    assert env.injected({"SINGULARITYENV_K": "v"}, [], []) == {"K": "v"}
    assert not [r for r in reports if r[0] >= report.WARNING]


def test_env_flag_comma_in_value() -> None:
    assert env.injected({}, [], ["LIST=a,b,c"]) == {"LIST": "a,b,c"}


def test_home_cannot_be_injected() -> None:
    assert env.injected({"APPTAINERENV_HOME": "/x"}, [], []) == {}


def test_bad_env_flag() -> None:
    with pytest.raises(UsageError):
        env.injected({}, [], ["NOEQUALS"])


def test_env_file(tmp_path: Path) -> None:
    path = tmp_path / "vars"
    path.write_text("# comment\nA=1\nexport B='two words'\nC=\"x y\"\n\n")
    assert env.injected({"APPTAINERENV_A": "0"}, [str(path)], ["C=z"]) == {
        "A": "1", "B": "two words", "C": "z"}


def test_missing_env_file() -> None:
    with pytest.raises(NotFoundError):
        env.read_env_file("/nonexistent/vars")


@pytest.mark.parametrize(("line", "expected"), [
    ("export A=1", "1"),
    ("A='lit $X'", "lit $X"),
    ('A="$X/bin"', "/x/bin"),
    ("A=${X}:${MISSING:-dflt}", "/x:dflt"),
    ('export A="${A:-kept}"', "kept"),
    ("A=$X ; # trailing comment", "/x"),
    ('A="esc \\$X \\"q\\""', 'esc $X "q"'),
])
def test_env_script_parser(line: str, expected: str) -> None:
    values = {"X": "/x"}
    env.apply_env_script(line, values)
    assert values["A"] == expected


@pytest.mark.parametrize("line", ["A=$(id)", "A=`id`", "if true; then A=1; fi", "A=1 | x",
                                  "A='unterminated"])
def test_env_script_parser_never_runs_anything(line: str) -> None:
    values: dict[str, str] = {}
    env.apply_env_script(line, values)
    assert "A" not in values


def test_final_env_path_rules() -> None:
    start = {"PATH": "/bin", "LD_LIBRARY_PATH": "/lib"}
    forced = {"PREPEND_PATH": "/pre", "APPEND_PATH": "/post", "X": "1",
              "APPEND_LD_LIBRARY_PATH": "/more"}
    result = env.final_env(start, forced)
    assert result["PATH"] == "/pre:/bin:/post"
    assert result["LD_LIBRARY_PATH"] == "/lib:/more:/.singularity.d/libs"
    assert result["X"] == "1"


def test_shell_script_quotes_values() -> None:
    text = env.shell_script(["/.singularity.d/env/90-environment.sh"],
                            {"A": "it's $HOME", "PATH": "/only"}, 'exec "$0" "$@"',
                            evaluate=False)
    assert "export A='it'\\''s $HOME'" in text
    assert "PATH='/only'" in text
    assert text.endswith('exec "$0" "$@"')


def test_base_env_sets_apptainer_variables() -> None:
    result = env.base_env({"FOO": "1"}, home="/home/u", image_ref="/img/x.sif",
                          action="exec", binds="/a")
    assert result["APPTAINER_NAME"] == "x.sif"
    assert result["SINGULARITY_CONTAINER"] == "/img/x.sif"
    assert result["APPTAINER_BIND"] == "/a"
    assert result["HOME"] == "/home/u" and result["FOO"] == "1"


def test_injected_values_expand_only_variables() -> None:
    text = env.shell_script([], {"A": "$HOME/x:${MISSING:-d}", "B": "$(id) `id` \"q\" \\"},
                            "true")
    assert 'export A="$HOME/x:${MISSING:-d}"' in text
    assert 'export B="\\$(id) \\`id\\` \\"q\\" \\\\"' in text


def test_no_eval_keeps_values_literal() -> None:
    text = env.shell_script([], {"A": "$HOME"}, "true", evaluate=False)
    assert "export A='$HOME'" in text


def test_final_env_expands_like_the_shell() -> None:
    result = env.final_env({"HOME": "/h", "LD_LIBRARY_PATH": "/img"},
                           {"A": "$HOME/x\\y $(id)", "LD_LIBRARY_PATH": "$LD_LIBRARY_PATH:/o"})
    assert result["A"] == "/h/x\\y $(id)"
    assert result["LD_LIBRARY_PATH"] == "/img:/o:/.singularity.d/libs"
