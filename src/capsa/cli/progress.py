"""Progress bars on stderr, only when stderr is a terminal.

Long steps (layer downloads, squashfs creation) redraw one line in place;
when stderr is a file or a pipe (spython, Snakemake, Nextflow capture it)
nothing at all is written, so a successful run stays silent there.  The
library reports progress through a plain callable, ``(key, done, total)``:
a blob digest while downloading, ``"convert"`` when downloads are over,
``"squashfs"`` while packing.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

_MIB = 1 << 20
_REDRAW_EVERY = 0.1  # seconds


def progress_for_terminal() -> Progress | None:
    """A :class:`Progress` when stderr is a terminal and messages are on
    (not ``-q``/``-s``), else None (the library then reports nothing)."""
    from capsa.cli import log

    if sys.stderr.isatty() and log.enabled(log.NORMAL):
        return Progress(sys.stderr)
    return None


class Progress:
    """The ``(key, done, total)`` callable the library reports through."""

    def __init__(self, stream: TextIO) -> None:
        self.bar = Bar(stream)
        self.blobs: dict[str, tuple[int, int]] = {}

    def __call__(self, key: str, done: int, total: int) -> None:
        if key == "squashfs":
            self.bar.show("Creating squashfs", done, total, sizes=False)
        elif ":" in key:  # a blob digest: the download phase
            self.blobs[key] = (done, total)
            self.bar.show("Copying blobs", sum(d for d, _ in self.blobs.values()),
                          sum(t for _, t in self.blobs.values()))
        else:
            self.finish()

    def finish(self) -> None:
        self.bar.finish()
        self.blobs = {}


class Bar:
    """One line redrawn in place: ``label [=====>    ]  45%  12.3/27.1 MiB``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.open_line = False
        self.drawn = ""
        self.when = 0.0

    def show(self, label: str, done: int, total: int, *, sizes: bool = True) -> None:
        now = time.monotonic()
        if now - self.when < _REDRAW_EVERY and done < total:
            return
        line = render(label, done, total, self._width(), sizes=sizes)
        if line == self.drawn:
            return
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()
        self.open_line, self.drawn, self.when = True, line, now

    def finish(self) -> None:
        """End the line (the next message starts on a fresh one)."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
        self.open_line, self.drawn, self.when = False, "", 0.0

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        return columns if columns > 0 else 80  # a fresh pty says 0


def render(label: str, done: int, total: int, width: int = 80, *, sizes: bool = True) -> str:
    """The bar's text for *width* columns (no escape sequences)."""
    fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
    tail = f" {fraction * 100:3.0f}%"
    if sizes:
        whole = f"{total / _MIB:.1f}"
        tail += f"  {done / _MIB:{len(whole)}.1f}/{whole} MiB"  # a steady width
    room = width - len(label) - len(tail) - 4  # " [" and "]", and a spare column
    if room < 10:
        return f"{label}{tail}"[: max(width - 1, 1)]
    filled = int(fraction * room)
    arrow = ">" if 0 < filled < room else ""
    body = "=" * (filled - len(arrow)) + arrow
    return f"{label} [{body:<{room}}]{tail}"
