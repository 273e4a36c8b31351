"""SIGTERM and SIGHUP end a pull or a build the way Ctrl-C does: as an
exception, so that every ``finally`` runs and the scratch directories and
temporary files go with it.  Slurm sends SIGTERM on ``scancel`` and at a
job's time limit (SIGKILL follows a little later), and SIGHUP reaches a job
whose terminal goes away; the default action of both ends the process on
the spot, leaving a half-written squashfs behind.

The exception is a :class:`KeyboardInterrupt` (so no ``except Exception``
on the way swallows it, and what handles Ctrl-C handles it too) that knows
its exit status, 128 + the signal's number.  Once one arrives, further ones
are ignored so that the cleanup it started can finish.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process was asked to end by *signum*."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def interrupted_status(err: KeyboardInterrupt) -> int:
    """The exit status of a run that *err* ended: 128 + the signal's number
    for SIGTERM/SIGHUP, 130 (SIGINT's) for Ctrl-C."""
    return err.exit_code if isinstance(err, Terminated) else 130


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    for other in (*SIGNALS, signal.SIGINT):
        signal.signal(other, signal.SIG_IGN)  # let the cleanup under way finish
    raise Terminated(signum)


@contextlib.contextmanager
def cleanup_on_termination() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated`."""
    previous = {signum: signal.signal(signum, _terminate) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
