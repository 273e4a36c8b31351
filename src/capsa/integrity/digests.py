"""The image metadata a signature covers, in the reference format.

A signature over an object group signs this JSON (``sylabs/sif``
``pkg/integrity``)::

    {"version":1,"header":{"digest":"sha256:..."},
     "objects":[{"relativeId":0,"descriptorDigest":"sha256:...",
                 "objectDigest":"sha256:..."}, ...]}

- header digest: the launch script, magic and version (bytes 0-44 of the
  file) then the 16-byte image ID (48-63); not the arch, times or counts;
- descriptor digest: little-endian data type (i32), used flag (u8), the
  object ID *relative to the smallest ID in the group* (u32), the raw linked
  ID with its group flag (u32), size, creation time, UID, GID (i64 each),
  then the name (128 bytes) and extra (384 bytes), all as stored;
- object digest: the object's data;
- a digest is written ``algorithm:lowercase-hex``.

Object data is hashed straight from the file in large reads into one
reusable buffer; :mod:`hashlib` releases the GIL while it hashes, so this
runs at the speed of ``sha256sum``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from capsa.errors import FormatError, SignatureError

if TYPE_CHECKING:
    from capsa.sif.image import Descriptor, SifImage

METADATA_VERSION = 1
DEFAULT_ALGORITHM = "sha256"
# The digest algorithms the reference accepts, by their names in JSON.
ALGORITHMS = ("sha224", "sha256", "sha384", "sha512", "sha512_224", "sha512_256")
_CHUNK = 4 << 20


class IntegrityError(SignatureError):
    """An image no longer matches what its signature covers."""

    def __init__(self, message: str, verified: Sequence[Descriptor] = (),
                 object_id: int = 0) -> None:
        super().__init__(message)
        self.verified = list(verified)
        self.object_id = object_id


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    value: bytes

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value.hex()}"

    @classmethod
    def parse(cls, text: object) -> Digest:
        if not isinstance(text, str) or text.count(":") != 1:
            raise SignatureError("digest malformed")
        algorithm, hexvalue = text.split(":")
        if algorithm not in ALGORITHMS:
            raise SignatureError("hash algorithm unsupported")
        try:
            value = bytes.fromhex(hexvalue)
        except ValueError as err:
            raise SignatureError("digest malformed") from err
        if len(value) != hashlib.new(algorithm).digest_size or len(hexvalue) != 2 * len(value):
            raise SignatureError("digest malformed")
        return cls(algorithm, value)


@dataclass(frozen=True, slots=True)
class ObjectMetadata:
    relative_id: int
    descriptor_digest: Digest
    object_digest: Digest


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    header: Digest
    objects: tuple[ObjectMetadata, ...]

    def to_json(self) -> bytes:
        """Compact JSON, byte for byte as the reference writes it."""
        document = {
            "version": METADATA_VERSION,
            "header": {"digest": str(self.header)},
            "objects": [
                {
                    "relativeId": o.relative_id,
                    "descriptorDigest": str(o.descriptor_digest),
                    "objectDigest": str(o.object_digest),
                }
                for o in self.objects
            ],
        }
        return json.dumps(document, separators=(",", ":")).encode()


def hash_bytes(algorithm: str, data: bytes) -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).digest())


def feed_range(hasher: hashlib._Hash, fd: int, offset: int, size: int) -> None:
    """Hash *size* bytes at *offset* of the open file *fd* into *hasher*."""
    buffer = bytearray(min(_CHUNK, max(size, 1)))
    view = memoryview(buffer)
    remaining = size
    while remaining > 0:
        want = min(remaining, len(buffer))
        got = os.preadv(fd, [view[:want]], offset)
        if got <= 0:
            raise IntegrityError("data object is truncated")
        hasher.update(view[:got])
        offset += got
        remaining -= got


def hash_range(fd: int, offset: int, size: int, algorithm: str) -> Digest:
    """Digest of *size* bytes at *offset* of the open file *fd*."""
    hasher = hashlib.new(algorithm)
    feed_range(hasher, fd, offset, size)
    return Digest(algorithm, hasher.digest())


def header_integrity_bytes(image: SifImage) -> bytes:
    raw = os.pread(image.fileno(), 64, 0)
    if len(raw) != 64:
        raise IntegrityError("header integrity compromised")
    return raw[0:45] + raw[48:64]


def descriptor_integrity_bytes(descriptor: Descriptor, relative_id: int) -> bytes:
    raw = descriptor.raw()
    return (raw[0:5] + struct.pack("<I", relative_id) + raw[13:17] + raw[25:33]
            + raw[41:49] + raw[57:73] + raw[73:585])


def object_digest(image: SifImage, descriptor: Descriptor, algorithm: str) -> Digest:
    return hash_range(image.fileno(), descriptor.offset, descriptor.size, algorithm)


def image_metadata(image: SifImage, min_id: int, descriptors: Sequence[Descriptor],
                   algorithm: str = DEFAULT_ALGORITHM) -> ImageMetadata:
    """The metadata over *descriptors* (IDs relative to *min_id*)."""
    header = hash_bytes(algorithm, header_integrity_bytes(image))
    objects = []
    for d in sorted(descriptors, key=lambda d: d.id):
        if d.id < min_id:
            raise SignatureError("minimum ID value invalid")
        rel = d.id - min_id
        objects.append(ObjectMetadata(
            rel,
            hash_bytes(algorithm, descriptor_integrity_bytes(d, rel)),
            object_digest(image, d, algorithm),
        ))
    return ImageMetadata(header, tuple(objects))


def _field(document: dict[str, object], name: str) -> object:
    """A JSON field, matched case-insensitively as Go's decoder does."""
    if name in document:
        return document[name]
    for key, value in document.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_metadata(data: bytes) -> ImageMetadata:
    """Decode signed metadata; SignatureError if it is not what we expect."""
    from capsa.jsondoc import load_object

    try:
        document = load_object(data, "image metadata", max_size=16 << 20)
    except FormatError as err:
        raise SignatureError(f"invalid image metadata: {err}") from err
    if _field(document, "version") != METADATA_VERSION:
        raise SignatureError("invalid image metadata: unsupported version")
    header = _field(document, "header")
    objects = _field(document, "objects")
    if not isinstance(header, dict) or not isinstance(objects, list | None):
        raise SignatureError("invalid image metadata")
    return ImageMetadata(Digest.parse(_field(header, "digest")),
                         tuple(_parse_object(o) for o in objects or []))


def _parse_object(item: object) -> ObjectMetadata:
    if not isinstance(item, dict):
        raise SignatureError("invalid image metadata: object entry")
    rel = _field(item, "relativeId")
    if rel is None:
        rel = 0  # Go leaves a missing field at its zero value
    if not isinstance(rel, int) or isinstance(rel, bool) or not 0 <= rel < 1 << 32:
        raise SignatureError("invalid image metadata: relativeId")
    return ObjectMetadata(rel, Digest.parse(_field(item, "descriptorDigest")),
                          Digest.parse(_field(item, "objectDigest")))


def check_ids(metadata: ImageMetadata, min_id: int, descriptors: Sequence[Descriptor]) -> None:
    """The signed objects must be exactly *descriptors*."""
    signed = {min_id + o.relative_id for o in metadata.objects}
    for d in descriptors:
        if d.id not in signed:
            raise IntegrityError(f"object {d.id}: object not signed", object_id=d.id)
    missing = signed - {d.id for d in descriptors}
    if missing:
        first = min(missing)
        raise IntegrityError(f"object {first}: signed object not found", object_id=first)


def check_metadata(image: SifImage, metadata: ImageMetadata, min_id: int,
                   descriptors: Sequence[Descriptor]) -> list[Descriptor]:
    """Check header and each of *descriptors*; the verified ones, in order."""
    header = metadata.header
    if hash_bytes(header.algorithm, header_integrity_bytes(image)) != header:
        raise IntegrityError("header integrity compromised")
    by_id = {min_id + o.relative_id: o for o in metadata.objects}
    verified: list[Descriptor] = []
    for d in descriptors:
        entry = by_id.get(d.id)
        if entry is None:
            raise IntegrityError(f"object {d.id}: object not signed", verified, d.id)
        want = entry.descriptor_digest
        if hash_bytes(want.algorithm, descriptor_integrity_bytes(d, entry.relative_id)) != want:
            raise IntegrityError(
                f"data object descriptor integrity compromised: {d.id}", verified, d.id)
        if object_digest(image, d, entry.object_digest.algorithm) != entry.object_digest:
            raise IntegrityError(f"data object integrity compromised: {d.id}", verified, d.id)
        verified.append(d)
    return verified
