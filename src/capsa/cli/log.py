"""Apptainer-style messages on stderr, fed by :mod:`capsa.report`.

The library reports through :mod:`capsa.report`; this module is its one
sink, formatting reports as Apptainer does (``INFO:    ``, ``WARNING: ``,
``ERROR:   ``, ``FATAL:   ``, ``DEBUG   ``) and honouring the global
verbosity flags.
"""

from __future__ import annotations

import sys

from capsa import report

# Apptainer's levels: -s silent (fatal only), -q quiet (errors), default
# (warnings+info), -v verbose, -d debug.
SILENT = report.CRITICAL
QUIET = report.ERROR
NORMAL = report.INFO
VERBOSE = report.VERBOSE
DEBUG = report.DEBUG

_PREFIX = {
    report.DEBUG: "DEBUG   ",
    report.VERBOSE: "VERBOSE ",
    report.INFO: "INFO:   ",
    report.WARNING: "WARNING:",
    report.ERROR: "ERROR:  ",
    report.CRITICAL: "FATAL:  ",
}

_COLOUR = {
    report.WARNING: "\x1b[33m",
    report.ERROR: "\x1b[31m",
    report.CRITICAL: "\x1b[31m",
    report.INFO: "\x1b[34m",
}


class _Stderr:
    """The sink: one line per report, prefixed as Apptainer prefixes it."""

    __slots__ = ("colour",)

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, level: int, name: str, message: str) -> None:
        del name
        prefix = _PREFIX.get(level, "")
        # Asked per line: an instance's monitor moves stderr to a log file.
        if self.colour and level in _COLOUR and sys.stderr.isatty():
            prefix = f"{_COLOUR[level]}{prefix}\x1b[0m"
        sys.stderr.write(f"{prefix} {message}\n")
        sys.stderr.flush()


_cli = report.getLogger("capsa.cli")


def setup(level: int, colour: bool) -> None:
    """Send reports of *level* and above to stderr."""
    report.configure(level, _Stderr(colour))


def info(msg: str) -> None:
    _cli.info(msg)


def warning(msg: str) -> None:
    _cli.warning(msg)


def terminal_warning(msg: str) -> None:
    """A warning about something that does not change the result: on a
    terminal, a WARNING; otherwise (a client program reading our stderr,
    such as spython, whose result turns from a string into a list with any
    line there) only with ``--verbose``."""
    _cli.log(report.WARNING if sys.stderr.isatty() else report.VERBOSE, msg)


def fatal_line(msg: str) -> None:
    """Print the FATAL line; the caller then exits 255."""
    if not report.enabled(report.CRITICAL):
        setup(NORMAL, colour=False)
    _cli.critical(msg)


def enabled(level: int) -> bool:
    return report.enabled(level)
