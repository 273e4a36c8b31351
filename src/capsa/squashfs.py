"""Squashfs images from tar streams, through ``tar2sqfs`` (squashfs-tools-ng).

``tar2sqfs`` keeps owners, modes, hard links, special files and xattrs from
the tar headers, so no root and no unpacked tree are needed.  The default
compressor is zstd level 3: on a 500 MB root filesystem it packs in about a
second where Apptainer's gzip level 9 takes twenty-five (see
``benchmarks/pull``); ``gzip`` stays available for kernels without zstd
squashfs support (older than 4.14).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from capsa.errors import CapsaError, ToolError, UsageError
from capsa.proc import DEFAULT_RUNNER, Completed, Runner, child_env
from capsa.scratch import free_space

COMPRESSORS = ("zstd", "gzip", "xz", "lz4", "lzo", "lzma")
DEFAULT_COMPRESSOR = "zstd"
DEFAULT_LEVEL = 3
_RELAY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class SquashfsOptions:
    """How to pack: compressor, its level, block size, worker count."""

    compressor: str = DEFAULT_COMPRESSOR
    level: int | None = DEFAULT_LEVEL
    block_size: int | None = None
    jobs: int | None = None

    def argv(self) -> list[str]:
        args = ["-c", self.compressor]
        if self.level is not None and self.compressor in ("zstd", "gzip", "xz", "lzma"):
            args += ["-X", f"level={self.level}"]
        if self.block_size is not None:
            args += ["-b", str(self.block_size)]
        args += ["-j", str(self.jobs or os.cpu_count() or 1)]
        return args


def options_from_mksquashfs_args(text: str) -> SquashfsOptions:
    """Read the parts of ``--mksquashfs-args`` that mean something to us:
    ``-comp NAME``, ``-Xcompression-level N`` and ``-b SIZE``.  Without
    ``-Xcompression-level``, gzip means Apptainer's gzip (level 9)."""
    words = shlex.split(text)
    compressor, level, block = DEFAULT_COMPRESSOR, None, None
    index = 0
    while index < len(words):
        word = words[index]
        value = words[index + 1] if index + 1 < len(words) else None
        if word in ("-comp", "-Xcompression-level", "-b", "-processors", "-mem") and value is None:
            raise UsageError(f"--mksquashfs-args: {word} needs a value")
        if word == "-comp":
            compressor = value or ""
            index += 1
        elif word == "-Xcompression-level":
            level = _int(word, value)
            index += 1
        elif word == "-b":
            block = _int(word, value)
            index += 1
        elif word in ("-processors", "-mem"):
            index += 1
        index += 1
    if compressor not in COMPRESSORS:
        raise UsageError(f"--mksquashfs-args: unknown compressor {compressor!r}")
    if level is None:
        level = {"zstd": DEFAULT_LEVEL, "gzip": 9}.get(compressor)
    return SquashfsOptions(compressor=compressor, level=level, block_size=block)


def _int(flag: str, value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise UsageError(f"--mksquashfs-args: {flag} needs a number, not {value!r}") from None


def from_tar_stream(dest: str | os.PathLike[str], write_tar: Callable[[BinaryIO], object],
                    options: SquashfsOptions = SquashfsOptions(), *,
                    runner: Runner = DEFAULT_RUNNER,
                    progress: Callable[[int], object] | None = None,
                    epoch: int | None = None) -> object:
    """Pack what *write_tar* writes (a tar stream) into a squashfs at *dest*.

    *write_tar* runs in this thread; a relay thread splices the stream on to
    ``tar2sqfs`` and counts it (*progress* gets the bytes passed so far, a
    few times a second); its result is returned.  On any error *dest* is
    removed.  ``tar2sqfs`` says only "I/O error" when its filesystem fills
    up (and removes what it wrote): a failure with less room left there than
    the stream it was given counts as running out of space.  *epoch*
    (SOURCE_DATE_EPOCH) is the filesystem's creation time.
    """
    argv = ["tar2sqfs", "-q", "-f", "-s", *options.argv(), os.fspath(dest)]
    packing = _Packing(progress, epoch)
    tar_read, tar_write = os.pipe()
    pack_read, pack_write = os.pipe()
    threads = [threading.Thread(target=packing.relay, args=(tar_read, pack_write), daemon=True),
               threading.Thread(target=packing.pack, args=(runner, argv, pack_read),
                                daemon=True)]
    for thread in threads:
        thread.start()
    try:
        result = _feed(tar_write, write_tar)
    except BaseException as err:
        for thread in threads:
            thread.join()
        if isinstance(err, ToolError):
            packing.check(dest)  # prefer tar2sqfs's own message
        _remove(dest)
        raise
    for thread in threads:
        thread.join()
    packing.check(dest)
    return result


class _Packing:
    """What the relay and ``tar2sqfs`` threads leave for the caller's thread."""

    def __init__(self, progress: Callable[[int], object] | None, epoch: int | None) -> None:
        self.progress = progress
        self.epoch = epoch
        self.fed = 0
        self.outcome: Completed | BaseException | None = None

    def relay(self, source: int, sink: int) -> None:
        """Splice the tar stream from *source* to *sink*, counting it."""
        import time

        shown = 0.0
        try:
            while True:
                moved = os.splice(source, sink, _RELAY_CHUNK)
                if moved == 0:
                    break
                self.fed += moved
                if self.progress is not None and time.monotonic() - shown > 0.1:
                    shown = time.monotonic()
                    self.progress(self.fed)
        except OSError:
            pass  # tar2sqfs stopped reading: the writer sees the broken pipe too
        finally:
            os.close(sink)
            os.close(source)

    def pack(self, runner: Runner, argv: Sequence[str], read_fd: int) -> None:
        try:
            env = None if self.epoch is None else child_env(
                SOURCE_DATE_EPOCH=str(self.epoch))
            self.outcome = runner.run(argv, stdin=read_fd, check=False, env=env)
        except BaseException as err:  # reported in the caller's thread
            self.outcome = err
        finally:
            os.close(read_fd)

    def check(self, dest: str | os.PathLike[str]) -> None:
        error = self.outcome
        if isinstance(error, BaseException):
            _remove(dest)
            if isinstance(error, CapsaError):
                raise error
            raise ToolError(f"tar2sqfs failed: {error}") from error
        if isinstance(error, Completed) and error.returncode != 0:
            room = free_space(os.path.dirname(os.path.abspath(dest)))
            _remove(dest)
            detail = error.stderr.decode(errors="replace").strip().splitlines()
            last = detail[-1] if detail else f"exit status {error.returncode}"
            if room < self.fed:
                last += f" ({os.strerror(errno.ENOSPC)})"
            raise ToolError(f"tar2sqfs failed: {last}")


def _feed(write_fd: int, write_tar: Callable[[BinaryIO], object]) -> object:
    pipe = os.fdopen(write_fd, "wb", buffering=1 << 20)
    try:
        result = write_tar(pipe)
        pipe.close()
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            pipe.close()
        raise ToolError("tar2sqfs stopped reading its input") from None
    except BaseException:
        with contextlib.suppress(OSError):  # a flush into a dead pipe
            pipe.close()
        raise
    return result


def _remove(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
