"""How the library tells the user what it is doing, without printing.

The library reports progress and warnings through a :class:`Reporter` per
module (``report.getLogger("capsa.pulling")``, named like :mod:`logging`'s so
call sites read the same).  Only the CLI decides where reports go: it calls
:func:`configure` once with a level and a sink; until then (a program using
capsa as a library) nothing is emitted.

Why not :mod:`logging` itself: importing it costs about 4 ms, a tenth of a
``capsa exec`` start, and capsa needs none of its machinery.
"""

from __future__ import annotations

from collections.abc import Callable

DEBUG = 10
VERBOSE = 15
INFO = 20
WARNING = 30
ERROR = 40
CRITICAL = 50

Sink = Callable[[int, str, str], None]
"""Receives (level, reporter name, message)."""


class _Config:
    __slots__ = ("level", "sink")

    def __init__(self) -> None:
        self.level = INFO
        self.sink: Sink | None = None


_config = _Config()


def configure(level: int, sink: Sink | None) -> None:
    """Send reports of *level* and above to *sink* (None: drop them)."""
    _config.level = level
    _config.sink = sink


def level() -> int:
    """The level reports are sent at (for a child process to report alike)."""
    return _config.level if _config.sink is not None else CRITICAL + 10


def enabled(level: int) -> bool:
    return _config.sink is not None and level >= _config.level


class Reporter:
    """One module's voice; cheap to create, holds no state but its name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def log(self, level: int, msg: str, *args: object) -> None:
        sink = _config.sink
        if sink is not None and level >= _config.level:
            sink(level, self.name, msg % args if args else msg)

    def isEnabledFor(self, level: int) -> bool:
        return enabled(level)

    def debug(self, msg: str, *args: object) -> None:
        self.log(DEBUG, msg, *args)

    def verbose(self, msg: str, *args: object) -> None:
        self.log(VERBOSE, msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self.log(INFO, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self.log(WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self.log(ERROR, msg, *args)

    def critical(self, msg: str, *args: object) -> None:
        self.log(CRITICAL, msg, *args)


def getLogger(name: str) -> Reporter:
    return Reporter(name)
