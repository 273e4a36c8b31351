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
import os
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from capsa.errors import CapsaError, ToolError, UsageError
from capsa.proc import DEFAULT_RUNNER, Completed, Runner

COMPRESSORS = ("zstd", "gzip", "xz", "lz4", "lzo", "lzma")
DEFAULT_COMPRESSOR = "zstd"
DEFAULT_LEVEL = 3


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
                    runner: Runner = DEFAULT_RUNNER) -> object:
    """Pack what *write_tar* writes (a tar stream) into a squashfs at *dest*.

    *write_tar* runs in this thread, ``tar2sqfs`` reads the other end of a
    pipe; its result is returned.  On any error *dest* is removed.
    """
    argv = ["tar2sqfs", "-q", "-f", "-s", *options.argv(), os.fspath(dest)]
    read_fd, write_fd = os.pipe()
    outcome: dict[str, Completed | BaseException] = {}
    worker = threading.Thread(target=_run_packer, args=(runner, argv, read_fd, outcome),
                              daemon=True)
    worker.start()
    try:
        result = _feed(write_fd, write_tar)
    except BaseException as err:
        worker.join()
        _remove(dest)
        if isinstance(err, ToolError):
            _check(outcome, dest)  # prefer tar2sqfs's own message
        raise
    worker.join()
    _check(outcome, dest)
    return result


def _run_packer(runner: Runner, argv: Sequence[str], read_fd: int,
                outcome: dict[str, Completed | BaseException]) -> None:
    try:
        outcome["done"] = runner.run(argv, stdin=read_fd, check=False)
    except BaseException as err:  # reported in the caller's thread
        outcome["error"] = err
    finally:
        os.close(read_fd)


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


def _check(outcome: dict[str, Completed | BaseException], dest: str | os.PathLike[str]) -> None:
    error = outcome.get("error")
    if isinstance(error, BaseException):
        _remove(dest)
        if isinstance(error, CapsaError):
            raise error
        raise ToolError(f"tar2sqfs failed: {error}") from error
    done = outcome.get("done")
    if isinstance(done, Completed) and done.returncode != 0:
        _remove(dest)
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        last = detail[-1] if detail else f"exit status {done.returncode}"
        raise ToolError(f"tar2sqfs failed: {last}")


def _remove(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
