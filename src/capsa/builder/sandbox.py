"""The build's working tree: a sandbox directory on disk.

Filled from a SIF or a squashfs (``unsquashfs``), given the
``/.singularity.d`` tree where a bootstrap agent made none, and finally
packed back (``tar`` into ``tar2sqfs``).  Who owns each file is kept as
:class:`Ownership` says: for real (as host root, or as root of a user
namespace with subordinate ids), in fakeroot(1)'s database (a root-mapped
namespace), or not at all (every file root's in the image).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from capsa.errors import FormatError, UsageError
from capsa.proc import DEFAULT_RUNNER, Runner, child_env
from capsa.programs import find, require
from capsa.rootfs.layers import SyntheticEntry
from capsa.squashfs import SquashfsOptions, from_tar_stream
from capsa.userns import FakerootTool, in_initial_namespace

_SIF_MAGIC = b"SIF_MAGIC"


def is_root() -> bool:
    """Root here: real root, or root of the build's user namespace."""
    return os.geteuid() == 0


def host_root() -> bool:
    """Real root on the host (device nodes, any owner, any xattr)."""
    return os.geteuid() == 0 and in_initial_namespace()


@dataclass(frozen=True, slots=True)
class Ownership:
    """How the owners of files (from the base image and ``%post``) reach the image.

    ``kind`` is ``"real"`` (the ids are real: host root, or root of a
    namespace with subordinate ids), ``"fakeroot"`` (a root-mapped namespace:
    fakeroot(1) records changes of owner in its database *state*, which
    unsquashfs, ``%post`` and tar share) or ``"all-root"`` (nothing can
    record them: every file is root's in the image)."""

    kind: str = "real"
    tool: FakerootTool | None = None
    state: Path | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        """*argv* under fakeroot(1) with the build's database, if any."""
        if self.kind != "fakeroot" or self.tool is None or self.state is None:
            return argv
        state = str(self.state)
        return [self.tool.script, "-i", state, "-s", state, "--", *argv]

    @property
    def env(self) -> dict[str, str] | None:
        """The environment for :meth:`wrap`'s commands: fakeroot must not
        try real changes of owner, which fail for every id but 0 here."""
        if self.kind != "fakeroot":
            return None
        return child_env(FAKEROOTDONTTRYCHOWN="1")


REAL_OWNERS = Ownership()


def unpack_image(image: Path, dest: Path, runner: Runner = DEFAULT_RUNNER,
                 ownership: Ownership = REAL_OWNERS) -> None:
    """Extract the root filesystem of a SIF file, a squashfs image or a
    Singularity 2.x image (squashfs or ext3 behind a launch line) into *dest*."""
    from capsa.legacyimage import HEAD_SIZE, detect

    try:
        with open(image, "rb") as handle:
            head = handle.read(HEAD_SIZE)
    except OSError as err:
        raise UsageError(f"could not open image {image}: {err.strerror}") from err
    legacy = detect(head)
    if head[32:41] == _SIF_MAGIC:
        _unsquash(image, dest, runner, ownership, offset=_primary_partition_offset(image))
    elif legacy is not None and legacy.fs_type == "squashfs":
        _unsquash(image, dest, runner, ownership, offset=legacy.offset)
    elif legacy is not None:
        _dump_ext3(image, dest, runner, ownership, legacy.offset)
    else:
        raise FormatError(f"could not open image {image}: image format not recognized")


def _dump_ext3(image: Path, dest: Path, runner: Runner, ownership: Ownership,
               offset: int) -> None:
    """An ext3 image's tree, read by debugfs: no mount, so users can convert
    the images they could not run (owners kept as unsquashfs keeps them)."""
    dest.mkdir(parents=True, exist_ok=True)
    source = f"{image}?offset={offset}" if offset else str(image)
    runner.run(ownership.wrap([require("debugfs"), "-R", f"rdump / {dest}", source]),
               env=ownership.env)
    with contextlib.suppress(OSError):
        (dest / "lost+found").rmdir()
    os.chmod(dest, 0o755)


def _primary_partition_offset(image: Path) -> int:
    from capsa.sif import FSType, SifImage

    with SifImage.open(image) as sif:
        part = sif.primary_partition()
        if part.partition_info()[0] != FSType.SQUASHFS:
            raise FormatError(f"{image}: the primary partition is not a squashfs")
        return part.offset


def _unsquash(squashfs: Path, dest: Path, runner: Runner, ownership: Ownership,
              offset: int = 0) -> None:
    # -f: dest may exist (empty).  Outside the host's root, device nodes (and
    # xattrs of the trusted namespace) cannot be made: those are warnings,
    # not a failed build; fakeroot(1) records them instead where it runs.
    argv = [require("unsquashfs"), "-n", "-q", "-f", "-d", str(dest)]
    if offset:
        argv += ["-o", str(offset)]
    if not host_root():
        argv += ["-ignore-errors"]
        if ownership.kind == "all-root" or not is_root():
            argv += ["-no-xattrs"]
    runner.run(ownership.wrap([*argv, str(squashfs)]), env=ownership.env)
    os.chmod(dest, 0o755)


def copy_tree(source: Path, dest: Path, runner: Runner = DEFAULT_RUNNER,
              ownership: Ownership = REAL_OWNERS) -> None:
    """A sandbox directory copied: owners kept where they are real here (host
    root, or a namespace with subordinate ids), the caller's otherwise."""
    dest.mkdir(parents=True, exist_ok=True)
    keep = host_root() or (is_root() and ownership.kind == "real")
    runner.run([require("cp"), "-a", *([] if keep else ["--no-preserve=ownership"]),
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
                  runner: Runner = DEFAULT_RUNNER, ownership: Ownership = REAL_OWNERS, *,
                  epoch: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> None:
    """The sandbox as a squashfs image at *dest*, with the owners
    *ownership* keeps (read through fakeroot's database where it is one);
    with *epoch* (SOURCE_DATE_EPOCH), reproducibly
    (:func:`reproducible_tar_flags`); *progress* gets (tar bytes packed,
    about how many there are)."""
    tar = require("tar")
    argv = [tar, "-C", str(sandbox), "-c", "-f", "-", "--numeric-owner", "--xattrs",
            "--exclude=./.post.script", "--exclude=./.build.labels"]
    if ownership.kind == "all-root" or not is_root():
        argv += ["--owner=0", "--group=0"]
    if not is_root():
        # As root of a user namespace that maps only us, tar may read our
        # files whatever their mode (0000 /etc/shadow in some images).
        unshare = find("unshare")
        if unshare is not None:
            argv = [unshare, "--map-root-user", *argv]
    if epoch is not None:
        argv += reproducible_tar_flags(epoch)
    argv = ownership.wrap([*argv, "."])

    def write(out: BinaryIO) -> None:
        out.flush()
        runner.run(argv, stdout=out, env=ownership.env)

    total = tar_size(sandbox) if progress is not None else 0

    def fed(done: int) -> None:
        if progress is not None:
            progress(min(done, total), total)

    from_tar_stream(dest, write, options, epoch=epoch,
                    progress=fed if progress is not None else None)
    fed(total)


def tar_size(root: Path) -> int:
    """About how long a tar of *root* is (headers and padded contents), for
    a progress bar: one walk, no reading."""
    size = 1024
    for dirpath, dirs, files in os.walk(root):
        size += 512 * (len(dirs) + len(files))
        for name in files:
            with contextlib.suppress(OSError):
                size += -(-os.lstat(os.path.join(dirpath, name)).st_size // 512) * 512
    return size


def reproducible_tar_flags(epoch: int) -> list[str]:
    """GNU tar's flags for a stream that depends only on the tree: members in
    name order (not directory order), no time after *epoch*
    (reproducible-builds.org's recipe; squashfs keeps only mtimes)."""
    return ["--sort=name", f"--mtime=@{epoch}", "--clamp-mtime"]


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
