"""Global flag parsing, below the process boundary."""

from __future__ import annotations

import pytest

from capsa.cli import log
from capsa.cli.main import parse_globals, program_name
from capsa.errors import UsageError


def test_debug_wins_over_quiet() -> None:
    opts, rest = parse_globals(["-q", "-d", "exec", "x"])
    assert opts.level == log.DEBUG
    assert rest == ["exec", "x"]


def test_quiet_beats_silent_as_in_apptainer() -> None:
    # Snakemake passes both; Apptainer's order is debug, verbose, quiet, silent.
    opts, _ = parse_globals(["--quiet", "--silent", "exec"])
    assert opts.level == log.QUIET


def test_unknown_global_flag() -> None:
    with pytest.raises(UsageError):
        parse_globals(["--bogus", "exec"])


@pytest.mark.parametrize(
    ("argv0", "name"),
    [("/usr/bin/apptainer", "apptainer"), ("singularity", "singularity"), ("x/capsa", "capsa")],
)
def test_program_name(argv0: str, name: str) -> None:
    assert program_name(argv0) == name
