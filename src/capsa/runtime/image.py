"""What the user named as IMAGE -> an :class:`ImageSpec` the launcher mounts.

A SIF file gives the byte range of its system partition (squashfs), a bare
squashfs file gives the whole file, a directory is a sandbox; a Singularity
2.x image (:mod:`capsa.legacyimage`) gives its squashfs or ext3 filesystem,
after its launch line.
"""

from __future__ import annotations

import os
import stat

from capsa.errors import CapsaError, ContainerError, NotFoundError, UsageError
from capsa.legacyimage import HEAD_SIZE, detect
from capsa.runtime.spec import ImageSpec
from capsa.sif.format import ARCH_UNKNOWN, FSType, go_arch, host_goarch
from capsa.sif.locate import PartitionLocation, quick_primary_partition

_SIF_MAGIC = b"SIF_MAGIC"


def resolve(ref: str, fd: int | None = None) -> ImageSpec:
    """Find the root filesystem of *ref*; one clear error if there is none.

    The image is opened once, here (or comes open as *fd*, which it then
    takes over): a squashfs or SIF comes back with that descriptor
    (``ImageSpec.fd``), which every later step reads through (the signature
    check, the partition, squashfuse, the loop device), so the image that
    runs is the one that was checked, whatever happens to its name
    meanwhile.  FIFOs and devices are refused without blocking."""
    if "://" in ref:
        raise UsageError(f"could not open image {ref}: URI images are not supported here; "
                         "pull the image first")
    path = os.path.abspath(ref)
    if fd is None:
        fd = open_image(path, ref)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            os.close(fd)
            return ImageSpec("dir", path)
        if not stat.S_ISREG(mode):
            raise UsageError(f"could not open image {path}: not a regular file or directory")
        spec = _file_image(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return spec


def open_image(path: str, ref: str) -> int:
    """*path* open read-only; never blocks (a FIFO), never leaks into children."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise NotFoundError(f"could not open image {path}: failed to retrieve path for "
                            f"{ref}: lstat {path}: no such file or directory") from err
    except OSError as err:
        raise UsageError(f"could not open image {path}: {err.strerror}") from err


def close(image: ImageSpec) -> None:
    """Let go of the image's descriptor (the process ending does it too)."""
    if image.fd >= 0:
        os.close(image.fd)


def _file_image(path: str, fd: int) -> ImageSpec:
    try:
        head = os.pread(fd, HEAD_SIZE, 0)
    except OSError as err:
        raise UsageError(f"could not open image {path}: {err.strerror}") from err
    if head[32:41] == _SIF_MAGIC:
        return _sif_partition(path, fd)
    legacy = detect(head)  # a bare squashfs, or Singularity 2.x squashfs or ext3
    if legacy is not None:
        return ImageSpec(legacy.fs_type, path, legacy.offset,
                         os.fstat(fd).st_size - legacy.offset, fd)
    raise UsageError(f"could not open image {path}: image format not recognized")


def ext3_unmountable(path: str) -> ContainerError:
    """The one FATAL for an ext3 image this process cannot mount (only root
    can, through a loop device), saying how to convert it."""
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    return ContainerError(f"could not open image {path}: it is an ext3 format container image "
                          "(Singularity 2.x), which only root can mount here, with a loop "
                          f"device; convert it to SIF once with: apptainer build {stem}.sif "
                          f"{path}")


def _sif_partition(path: str, fd: int) -> ImageSpec:
    # The quick locator answers for well-formed files; anything unusual goes
    # to the full reader, whose errors are the precise ones.
    found = quick_primary_partition(fd) or _checked_primary_partition(path, fd)
    fs_type, offset, size, arch = found
    if fs_type != FSType.SQUASHFS:
        raise UsageError(f"could not open image {path}: unsupported root filesystem type "
                         f"{fs_type}")
    wanted, here = go_arch(arch), host_goarch()
    if wanted == "unknown" and arch != ARCH_UNKNOWN:
        wanted = arch  # a code we do not know: refuse it by name
    if wanted not in (here, "unknown"):
        raise UsageError(f"could not open image {path}: image targets '{wanted}', "
                         f"cannot run on '{here}'")
    return ImageSpec("squashfs", path, offset, size, fd)


def _checked_primary_partition(path: str, fd: int) -> PartitionLocation:
    from capsa.sif.image import SifImage

    try:
        with SifImage.from_fd(fd, path) as sif:
            part = sif.primary_partition()
            fs_type, _, arch = part.partition_info()
    except NotFoundError as err:
        raise NotFoundError(f"could not open image {path}: "
                            "no root filesystem partition found") from err
    except CapsaError as err:
        raise UsageError(f"could not open image {path}: {err}") from err
    return PartitionLocation(int(fs_type), part.offset, part.size, arch)
