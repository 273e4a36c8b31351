"""What ``--version`` and ``version`` print, as the client programs parse it:
Apptainer's command-line level under ``apptainer``/``singularity``, capsa's
own under ``capsa``."""

from __future__ import annotations

import re

import pytest
from packaging.version import Version

from capsa import APPTAINER_VERSION, __version__
from support.cli import Capsa


def _snakemake_parse(output: str) -> Version:
    """snakemake/deployment/singularity.py: the last word, trimmed until it parses."""
    raw = output.rsplit(" ", 1)[-1].removeprefix("v")
    for end in range(len(raw), 0, -1):
        try:
            return Version(raw[:end])
        except ValueError:
            continue
    raise AssertionError(f"snakemake cannot parse {output!r}")


def _cwltool_parse(output: str) -> tuple[str, Version]:
    """cwltool/singularity.py get_version: ``(.+) version ([0-9\\.]+)``."""
    match = re.match(r"(.+) version ([0-9\.]+)", output.strip())
    assert match is not None, output
    return match.group(1), Version(match.group(2))


@pytest.mark.parametrize("program", ["apptainer", "singularity"])
def test_apptainer_version_parses_in_every_client(any_capsa: Capsa, program: str) -> None:
    result = any_capsa.as_program(program)("--version")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == f"apptainer version {APPTAINER_VERSION}+capsa.{__version__}\n"
    first = result.stdout.splitlines()[0]
    # Snakemake: starts with "apptainer", at least 1.0.0
    assert result.stdout.startswith("apptainer")
    assert _snakemake_parse(result.stdout) >= Version("1.0.0")
    assert _snakemake_parse(result.stdout).base_version == APPTAINER_VERSION
    # cwltool: flavor "apptainer", 1.1 or newer for `run --no-eval`
    assert _cwltool_parse(result.stdout) == ("apptainer", Version(APPTAINER_VERSION))
    assert _cwltool_parse(result.stdout)[1] >= Version("1.1")
    # spython: the first line, stripped (get_singularity_version)
    assert first.strip("\n") == f"apptainer version {APPTAINER_VERSION}+capsa.{__version__}"
    bare = any_capsa.as_program(program)("version")
    assert bare.stdout == f"{APPTAINER_VERSION}+capsa.{__version__}\n", bare


def test_capsa_keeps_its_own_version(any_capsa: Capsa) -> None:
    assert any_capsa("--version").stdout == f"capsa version {__version__}\n"
    assert any_capsa("version").stdout == f"{__version__}\n"


def test_version_help_first_line(any_capsa: Capsa) -> None:
    for program in ("apptainer", "singularity"):
        result = any_capsa.as_program(program)("version", "--help")
        assert result.returncode == 0, result
        lines = result.stdout.splitlines()
        assert lines[0] == "Show the version for Apptainer"
        assert lines[2:4] == ["Usage:", f"  {program} version"]
