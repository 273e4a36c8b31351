"""The build's working tree: a sandbox directory on disk.

Filled from a SIF or a squashfs (``unsquashfs``; as a user, files end up
owned by the caller), given the ``/.singularity.d`` tree where a bootstrap
agent made none, and finally packed back (``tar`` into ``tar2sqfs``: as a
user, every file is recorded as root's, as Apptainer's ``-all-root``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from capsa.errors import FormatError, UsageError
from capsa.proc import DEFAULT_RUNNER, Runner, require, which
from capsa.rootfs.layers import SyntheticEntry
from capsa.squashfs import SquashfsOptions, from_tar_stream

_SIF_MAGIC = b"SIF_MAGIC"
_SQUASHFS_MAGIC = b"hsqs"


def is_root() -> bool:
    return os.geteuid() == 0


def unpack_image(image: Path, dest: Path, runner: Runner = DEFAULT_RUNNER) -> None:
    """Extract the root filesystem of a SIF file or squashfs image into *dest*."""
    try:
        with open(image, "rb") as handle:
            head = handle.read(64)
    except OSError as err:
        raise UsageError(f"could not open image {image}: {err.strerror}") from err
    if head[32:41] == _SIF_MAGIC:
        _unsquash(image, dest, runner, offset=_primary_partition_offset(image))
    elif head[:4] == _SQUASHFS_MAGIC:
        _unsquash(image, dest, runner)
    else:
        raise FormatError(f"could not open image {image}: image format not recognized")


def _primary_partition_offset(image: Path) -> int:
    from capsa.sif import FSType, SifImage

    with SifImage.open(image) as sif:
        part = sif.primary_partition()
        if part.partition_info()[0] != FSType.SQUASHFS:
            raise FormatError(f"{image}: the primary partition is not a squashfs")
        return part.offset


def _unsquash(squashfs: Path, dest: Path, runner: Runner, offset: int = 0) -> None:
    # -f: dest may exist (empty); as a user device nodes cannot be made:
    # those are warnings, not a failed build.
    argv = [require("unsquashfs"), "-n", "-q", "-f", "-d", str(dest)]
    if offset:
        argv += ["-o", str(offset)]
    if not is_root():
        argv += ["-no-xattrs", "-ignore-errors"]
    runner.run([*argv, str(squashfs)])
    os.chmod(dest, 0o755)


def copy_tree(source: Path, dest: Path, runner: Runner = DEFAULT_RUNNER) -> None:
    """A sandbox directory copied (owners kept as root, the caller's otherwise)."""
    dest.mkdir(parents=True, exist_ok=True)
    runner.run([require("cp"), "-a", "--no-preserve=ownership" if not is_root() else "-a",
                f"{source}/.", str(dest)])


def write_entries(root: Path, entries: Iterable[SyntheticEntry], *, replace: bool) -> None:
    """Materialise synthetic tar entries under *root* (only the missing ones
    unless *replace*)."""
    for entry in entries:
        info = entry.info
        path = confined(root, info.name, check_leaf=False)
        exists = os.path.lexists(path)
        if exists and not replace:
            continue
        if path.is_symlink():  # replaced, never followed
            path.unlink()
            exists = False
        if info.isdir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if exists and not path.is_dir():
            path.unlink()
        if info.issym():
            path.symlink_to(info.linkname)
        elif info.isfile():
            path.write_bytes(entry.data)
            path.chmod(info.mode)


def confined(root: Path, inner: str, *, check_leaf: bool = True) -> Path:
    """*inner* (an absolute or relative path inside the image) under *root*;
    refuses ``..`` escapes and parents that are symlinks leading outside."""
    parts = [p for p in inner.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"path {inner!r} leaves the container")
    if not parts:
        return root  # the container's own root is inside it
    path = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    # The parent must resolve inside; so must the path itself when it is a
    # symlink (cp would follow it).  A hostile base cannot redirect writes.
    leaf = check_leaf and path.is_symlink()
    for probe in (path.parent, path) if leaf else (path.parent,):
        real = os.path.realpath(probe)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise UsageError(f"path {inner!r} resolves outside the container")
    return path


def pack_squashfs(sandbox: Path, dest: Path, options: SquashfsOptions,
                  runner: Runner = DEFAULT_RUNNER) -> None:
    """The sandbox as a squashfs image at *dest*."""
    tar = require("tar")
    argv = [tar, "-C", str(sandbox), "-c", "-f", "-", "--numeric-owner", "--xattrs",
            "--exclude=./.post.script", "--exclude=./.build.labels"]
    if not is_root():
        argv += ["--owner=0", "--group=0"]
        # As root of a user namespace that maps only us, tar may read our
        # files whatever their mode (0000 /etc/shadow in some images).
        unshare = which("unshare")
        if unshare is not None:
            argv = [unshare, "--map-root-user", *argv]
    argv.append(".")

    def write(out: BinaryIO) -> None:
        out.flush()
        runner.run(argv, stdout=out)

    from_tar_stream(dest, write, options)


def remove_tree(path: Path) -> None:
    """Remove a sandbox, even where a build left directories without write
    permission."""
    if not os.path.lexists(path):
        return
    if not path.is_dir() or path.is_symlink():
        path.unlink()
        return

    def retry(function: object, failed: str, _exc: object) -> None:
        del function
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)

    shutil.rmtree(path, onerror=retry)


def fix_permissions(root: Path) -> None:
    """``--fix-perms``: owner rwx on directories, rw on files (Apptainer's
    rule for images whose files their owner cannot read or remove)."""
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, os.lstat(path).st_mode | 0o700)
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, os.lstat(path).st_mode | 0o600)


def add_synthetic_file(root: Path, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    write_entries(root, [SyntheticEntry(info, data)], replace=True)
