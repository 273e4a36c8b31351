"""Apptainer-style messages on stderr, fed by the ``capsa`` logger.

The library reports through :mod:`logging`; this module installs the one
handler that formats records as Apptainer does (``INFO:    ``,
``WARNING: ``, ``ERROR:   ``, ``FATAL:   ``, ``DEBUG   ``) and honours the
global verbosity flags.
"""

from __future__ import annotations

import logging
import sys

# Apptainer's levels: -s silent (fatal only), -q quiet (errors), default
# (warnings+info), -v verbose, -d debug.
SILENT = logging.CRITICAL
QUIET = logging.ERROR
NORMAL = logging.INFO
VERBOSE = logging.INFO - 1
DEBUG = logging.DEBUG

_PREFIX = {
    logging.DEBUG: "DEBUG   ",
    VERBOSE: "VERBOSE ",
    logging.INFO: "INFO:   ",
    logging.WARNING: "WARNING:",
    logging.ERROR: "ERROR:  ",
    logging.CRITICAL: "FATAL:  ",
}

_COLOUR = {
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[31m",
    logging.INFO: "\x1b[34m",
}


class _ApptainerFormatter(logging.Formatter):
    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        prefix = _PREFIX.get(record.levelno, record.levelname)
        if self.colour and record.levelno in _COLOUR:
            prefix = f"{_COLOUR[record.levelno]}{prefix}\x1b[0m"
        return f"{prefix} {record.getMessage()}"


_logger = logging.getLogger("capsa")


def setup(level: int, colour: bool) -> None:
    """Install the stderr handler once, at *level*."""
    logging.addLevelName(VERBOSE, "VERBOSE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ApptainerFormatter(colour and sys.stderr.isatty()))
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


def info(msg: str) -> None:
    _logger.info(msg)


def verbose(msg: str) -> None:
    _logger.log(VERBOSE, msg)


def warning(msg: str) -> None:
    _logger.warning(msg)


def error(msg: str) -> None:
    _logger.error(msg)


def debug(msg: str) -> None:
    _logger.debug(msg)


def fatal_line(msg: str) -> None:
    """Print the FATAL line; the caller then exits 255."""
    if not _logger.handlers:
        setup(NORMAL, colour=False)
    _logger.critical(msg)


def enabled(level: int) -> bool:
    return _logger.isEnabledFor(level)
