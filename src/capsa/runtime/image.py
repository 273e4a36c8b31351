"""What the user named as IMAGE -> an :class:`ImageSpec` the launcher mounts.

A SIF file gives the byte range of its system partition (squashfs), a bare
squashfs file gives the whole file, a directory is a sandbox.
"""

from __future__ import annotations

import os
import struct

from capsa.errors import CapsaError, NotFoundError, UsageError
from capsa.runtime.spec import ImageSpec

_SIF_MAGIC = b"SIF_MAGIC"
_SQUASHFS_MAGIC = b"hsqs"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "i686": "386", "armv7l": "arm"}


def resolve(ref: str) -> ImageSpec:
    """Find the root filesystem of *ref*; one clear error if there is none."""
    if "://" in ref:
        raise UsageError(f"could not open image {ref}: URI images are not supported here; "
                         "pull the image first")
    path = os.path.abspath(ref)
    try:
        if os.path.isdir(path):
            return ImageSpec("dir", path)
        with open(path, "rb") as handle:
            head = handle.read(64)
    except FileNotFoundError as err:
        raise NotFoundError(f"could not open image {path}: failed to retrieve path for "
                            f"{ref}: lstat {path}: no such file or directory") from err
    except OSError as err:
        raise UsageError(f"could not open image {path}: {err.strerror}") from err
    if head[32:41] == _SIF_MAGIC:
        return _sif_partition(path)
    if head[:4] == _SQUASHFS_MAGIC:
        return ImageSpec("squashfs", path, 0, os.path.getsize(path))
    raise UsageError(f"could not open image {path}: image format not recognized")


# The exec path reads the SIF header and descriptor table itself (struct
# only): importing the full capsa.sif reader costs more than the whole
# container setup.  Anything unusual falls back to capsa.sif, whose errors
# are the precise ones.
_HEADER = struct.Struct("<32s10s3s3s16s8q")
_DESCRIPTOR = struct.Struct("<iBIIIqqqqqqq128s384s")
_PARTITION = struct.Struct("<ii3s")
_DATA_PARTITION = 0x4004
_PART_PRIMSYS = 2
_FS_SQUASHFS = 1
_MAX_DESCRIPTORS = 1 << 16
_SIF_ARCH = {"01": "386", "02": "amd64", "03": "arm", "04": "arm64", "05": "ppc64",
             "06": "ppc64le", "07": "mips", "08": "mipsle", "09": "mips64",
             "10": "mips64le", "11": "s390x", "12": "riscv64", "00": "unknown"}


def _sif_partition(path: str) -> ImageSpec:
    found = _fast_primary_partition(path)
    if found is None:
        found = _checked_primary_partition(path)
    fs_type, offset, size, arch = found
    if fs_type != _FS_SQUASHFS:
        raise UsageError(f"could not open image {path}: unsupported root filesystem type "
                         f"{fs_type}")
    wanted, here = _SIF_ARCH.get(arch, arch), host_arch()
    if wanted not in (here, "unknown"):
        raise UsageError(f"could not open image {path}: image targets '{wanted}', "
                         f"cannot run on '{here}'")
    return ImageSpec("squashfs", path, offset, size)


def _fast_primary_partition(path: str) -> tuple[int, int, int, str] | None:
    """(fs type, offset, size, arch code) of the PRIMSYS partition, or None
    when the file needs the full reader's judgement."""
    try:
        with open(path, "rb") as handle:
            header = _HEADER.unpack(handle.read(_HEADER.size))
            total, table_offset = header[8], header[9]
            if not 0 < total <= _MAX_DESCRIPTORS:
                return None
            handle.seek(table_offset)
            table = handle.read(total * _DESCRIPTOR.size)
            file_size = os.fstat(handle.fileno()).st_size
    except (OSError, struct.error):
        return None
    for index in range(len(table) // _DESCRIPTOR.size):
        fields = _DESCRIPTOR.unpack_from(table, index * _DESCRIPTOR.size)
        if not fields[1] or fields[0] != _DATA_PARTITION:
            continue
        fs_type, part_type, arch = _PARTITION.unpack_from(fields[13])
        offset, size = fields[5], fields[6]
        if part_type != _PART_PRIMSYS:
            continue
        if offset < 0 or size <= 0 or offset + size > file_size:
            return None
        return fs_type, offset, size, arch.rstrip(b"\0").decode("ascii", "replace")
    return None


def _checked_primary_partition(path: str) -> tuple[int, int, int, str]:
    from capsa.sif.image import SifImage

    try:
        with SifImage.open(path) as sif:
            part = sif.primary_partition()
            fs_type, _, arch = part.partition_info()
    except NotFoundError as err:
        raise NotFoundError(f"could not open image {path}: "
                            "no root filesystem partition found") from err
    except CapsaError as err:
        raise UsageError(f"could not open image {path}: {err}") from err
    return int(fs_type), part.offset, part.size, arch


def host_arch() -> str:
    machine = os.uname().machine
    return _ARCH.get(machine, machine)
