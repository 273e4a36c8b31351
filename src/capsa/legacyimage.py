"""Singularity 2.x image files, which Apptainer still runs.

Before SIF, an image was one filesystem, squashfs (``.simg``, Singularity
2.4+) or ext3 (``.img``, older), often behind a launch line
(``#!/usr/bin/env run-singularity``) so that the file could be executed.
:func:`detect` finds the filesystem as Apptainer's image code does
(``pkg/image/squashfs.go``, ``ext3.go``): the launch line, if any, within the
first 2048 bytes, the filesystem right after its newline.
"""

from __future__ import annotations

import struct

from capsa.record import Record

HEAD_SIZE = 2048
_LAUNCH = b" run-singularity"
_SQUASHFS_MAGIC = b"hsqs"
_EXT_MAGIC = b"\x53\xef"
_EXT_SUPERBLOCK = 1024  # the magic is at 1080, the feature words at 1116
_HAS_JOURNAL = 0x4
_INCOMPAT_EXT3 = 0x2 | 0x4 | 0x10  # filetype, recover, meta_bg
_ROCOMPAT_EXT3 = 0x1 | 0x2 | 0x4  # sparse_super, large_file, btree_dir


class LegacyImage(Record):
    """The filesystem of a legacy image: ``"squashfs"`` or ``"ext3"``, and
    where it starts in the file."""

    fs_type: str
    offset: int


def detect(head: bytes) -> LegacyImage | None:
    """The filesystem in an image whose first bytes are *head* (at least
    :data:`HEAD_SIZE` of them when the file has them); None if neither."""
    offset = 0
    launch = head.find(_LAUNCH)
    if launch > 0:
        offset = launch + len(_LAUNCH) + 1
    if head[offset:offset + 4] == _SQUASHFS_MAGIC:
        return LegacyImage("squashfs", offset)
    if _is_ext3(head[offset + _EXT_SUPERBLOCK:offset + _EXT_SUPERBLOCK + 104]):
        return LegacyImage("ext3", offset)
    return None


def _is_ext3(superblock: bytes) -> bool:
    """An ext2/3/4 superblock with a journal and only ext3's features."""
    if len(superblock) < 104 or superblock[56:58] != _EXT_MAGIC:
        return False
    compat, incompat, rocompat = struct.unpack_from("<III", superblock, 92)
    return bool(compat & _HAS_JOURNAL) and not incompat & ~_INCOMPAT_EXT3 \
        and not rocompat & ~_ROCOMPAT_EXT3


__all__ = ["HEAD_SIZE", "LegacyImage", "detect"]
