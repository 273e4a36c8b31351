"""SIF, the Singularity Image Format: reading and writing images.

The format only (no signatures, no squashfs).  See :mod:`capsa.sif.image`
for the API and :mod:`capsa.sif.format` for constants and enumerations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from capsa.sif.format import (
    DEFAULT_LAUNCH_SCRIPT,
    DataType,
    FormatType,
    FSType,
    HashType,
    MessageType,
    PartType,
    go_arch,
    host_goarch,
    sif_arch,
)
from capsa.sif.image import Descriptor, Header, SifImage

if TYPE_CHECKING:
    from capsa.sif.writer import NewObject, add_objects, create, delete_object, set_primary

_WRITER_NAMES = frozenset({"NewObject", "add_objects", "create", "delete_object", "set_primary"})


def __getattr__(name: str) -> object:
    # The writer loads only when used: reading an image stays cheap.
    if name in _WRITER_NAMES:
        from capsa.sif import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_LAUNCH_SCRIPT",
    "DataType",
    "Descriptor",
    "FSType",
    "FormatType",
    "HashType",
    "Header",
    "MessageType",
    "NewObject",
    "PartType",
    "SifImage",
    "add_objects",
    "create",
    "delete_object",
    "go_arch",
    "host_goarch",
    "set_primary",
    "sif_arch",
]
