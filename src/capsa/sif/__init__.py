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

if TYPE_CHECKING:
    from capsa.sif.image import Descriptor, Header, SifImage
    from capsa.sif.writer import NewObject, add_objects, create, delete_object, set_primary

_IMAGE_NAMES = frozenset({"Descriptor", "Header", "SifImage"})
_WRITER_NAMES = frozenset({"NewObject", "add_objects", "create", "delete_object", "set_primary"})


def __getattr__(name: str) -> object:
    # The reader and the writer load only when used, so that the exec path
    # (capsa.sif.locate) pays for neither.
    if name in _IMAGE_NAMES:
        from capsa.sif import image

        return getattr(image, name)
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
