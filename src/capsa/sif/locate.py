"""Find the primary partition of a SIF quickly, for the exec hot path.

Reads only the header and the descriptor table with :mod:`struct`, and
imports neither dataclasses nor the writer.  It answers only for files that
look well-formed; anything unusual returns None, and the caller then asks
the full, validating reader (:class:`capsa.sif.image.SifImage`), whose errors
are the precise ones.
"""

from __future__ import annotations

import os
import struct

from capsa.record import Record
from capsa.sif.format import (
    DESCRIPTOR_STRUCT,
    HEADER_STRUCT,
    PARTITION_STRUCT,
    DataType,
    PartType,
)

# More descriptors than this is not an image anybody wrote: let the full
# reader judge it.
_MAX_DESCRIPTORS = 1 << 16


class PartitionLocation(Record):
    """Where the primary system partition lies, and what it holds."""

    fs_type: int
    offset: int
    size: int
    arch: str  # SIF code, e.g. "02"


def quick_primary_partition(fd: int) -> PartitionLocation | None:
    """The PRIMSYS partition of the SIF open as *fd*, or None when in doubt."""
    try:
        header = HEADER_STRUCT.unpack(os.pread(fd, HEADER_STRUCT.size, 0))
        total, table_offset = header[8], header[9]  # DescrTotal, DescrOffset
        if not 0 < total <= _MAX_DESCRIPTORS or table_offset < HEADER_STRUCT.size:
            return None
        table = os.pread(fd, total * DESCRIPTOR_STRUCT.size, table_offset)
        file_size = os.fstat(fd).st_size
    except (OSError, struct.error):
        return None
    for index in range(len(table) // DESCRIPTOR_STRUCT.size):
        fields = DESCRIPTOR_STRUCT.unpack_from(table, index * DESCRIPTOR_STRUCT.size)
        if not fields[1] or fields[0] != DataType.PARTITION:
            continue
        fs_type, part_type, arch = PARTITION_STRUCT.unpack_from(fields[13])
        if part_type != PartType.PRIMSYS:
            continue
        offset, size = fields[5], fields[6]
        if offset < 0 or size <= 0 or offset + size > file_size:
            return None
        code = arch.rstrip(b"\0").decode("ascii", "replace")
        return PartitionLocation(fs_type, offset, size, code)
    return None
