"""Reading SIF images: the global header, the descriptor table, the objects.

A SIF file is untrusted input.  :meth:`SifImage.open` checks the header and
every used descriptor before anything else looks at them, so that the rest
of capsa can trust offsets and sizes: a malformed file raises
:class:`~capsa.errors.SifFormatError`, a missing one
:class:`~capsa.errors.NotFoundError`.

Writing (``create``, ``add_objects``, ``delete_object``, ``set_primary``,
``NewObject``) lives in :mod:`capsa.sif.writer` and is re-exported here.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uuid

from capsa.errors import NotFoundError, SifFormatError, UsageError
from capsa.sif.format import (
    CRYPTO_STRUCT,
    DESCRIPTOR_SIZE,
    DESCRIPTOR_STRUCT,
    FINGERPRINT_SIZE,
    GROUP_MASK,
    HEADER_SIZE,
    HEADER_STRUCT,
    MAGIC,
    PARTITION_STRUCT,
    SBOM_STRUCT,
    SIGNATURE_STRUCT,
    VERSION,
    DataType,
    FormatType,
    FSType,
    HashType,
    MessageType,
    PartType,
    sbom_format_name,
)

# More descriptors than this is not an image, it is an attack on our memory.
MAX_DESCRIPTORS = 1 << 16


def _text(raw: bytes) -> str:
    """A NUL-padded byte field as text (bytes kept through surrogateescape)."""
    return raw.rstrip(b"\x00").decode("utf-8", "surrogateescape")


def raw_text(text: str) -> bytes:
    """The bytes :func:`_text` read."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Header:
    """The global header (the first 128 bytes)."""

    launch_script: bytes
    version: str
    arch: str  # SIF code, "02"; "00" when there is no primary partition
    id_bytes: bytes  # the image UUID's 16 bytes; ``id`` is it as a uuid.UUID
    created_at: int
    modified_at: int
    descriptors_free: int
    descriptors_total: int
    descriptors_offset: int
    descriptors_size: int
    data_offset: int
    data_size: int
    _raw: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def parse(cls, raw: bytes) -> Header:
        (launch, magic, version, arch, ident, ctime, mtime, free, total,
         doff, dsize, data_off, data_size) = HEADER_STRUCT.unpack(raw)
        if magic != MAGIC:
            raise SifFormatError("invalid SIF magic")
        if version != VERSION:
            raise SifFormatError("incompatible SIF version")
        return cls(launch.rstrip(b"\x00"), _text(version), _text(arch), ident,
                   ctime, mtime, free, total, doff, dsize, data_off, data_size, bytes(raw))

    @property
    def id(self) -> uuid.UUID:
        """The image UUID (uuid is imported only here: the exec path needs no ID)."""
        import uuid

        return uuid.UUID(bytes=self.id_bytes)

    def raw(self) -> bytes:
        """The exact 128 bytes of the header (as read, or as it would be written)."""
        if self._raw:
            return self._raw
        return HEADER_STRUCT.pack(
            self.launch_script, MAGIC, raw_text(self.version), raw_text(self.arch),
            self.id_bytes, self.created_at, self.modified_at, self.descriptors_free,
            self.descriptors_total, self.descriptors_offset, self.descriptors_size,
            self.data_offset, self.data_size)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One used entry of the descriptor table."""

    data_type: DataType
    id: int
    group_id: int  # without the 0xf0000000 flag; 0 = no group
    linked_id: int  # without the flag; 0 = no link
    linked_is_group: bool
    offset: int
    size: int
    size_with_padding: int
    created_at: int
    modified_at: int
    uid: int
    gid: int
    name: str
    extra: bytes  # the raw 384 bytes of type-specific metadata
    _raw: bytes = field(default=b"", repr=False, compare=False)
    index: int = field(default=-1, compare=False)  # slot in the table

    @classmethod
    def parse(cls, raw: bytes, index: int = -1) -> Descriptor:
        (dtype, _used, ident, group, link, offset, size, padded, ctime, mtime, uid, gid,
         name, extra) = DESCRIPTOR_STRUCT.unpack(raw)
        return cls(DataType(dtype), ident, group & ~GROUP_MASK, link & ~GROUP_MASK,
                   link & GROUP_MASK == GROUP_MASK, offset, size, padded, ctime, mtime,
                   uid, gid, _text(name), extra, bytes(raw), index)

    def raw(self) -> bytes:
        """Its exact 585 on-disk bytes."""
        return self._raw or self.pack()

    def pack(self) -> bytes:
        """The 585 bytes these fields encode (``used`` set)."""
        link = self.linked_id | (GROUP_MASK if self.linked_is_group else 0)
        return DESCRIPTOR_STRUCT.pack(
            int(self.data_type), 1, self.id, self.group_id | GROUP_MASK, link, self.offset,
            self.size, self.size_with_padding, self.created_at, self.modified_at, self.uid,
            self.gid, raw_text(self.name), self.extra)

    def _expect(self, *types: DataType) -> None:
        if self.data_type not in types:
            wanted = ", ".join(t.name for t in types)
            raise UsageError(f"object {self.id} is of type {self.data_type.name}, "
                             f"expected {wanted}")

    def partition_info(self) -> tuple[FSType, PartType, str]:
        """(filesystem, partition type, SIF arch code) of a partition."""
        self._expect(DataType.PARTITION)
        fs, part, arch = PARTITION_STRUCT.unpack_from(self.extra)
        return FSType(fs), PartType(part), _text(arch)

    def signature_info(self) -> tuple[HashType, bytes]:
        """(hash, 20-byte fingerprint; all zero when absent) of a signature."""
        self._expect(DataType.SIGNATURE)
        hash_type, entity = SIGNATURE_STRUCT.unpack_from(self.extra)
        return HashType(hash_type), entity[:FINGERPRINT_SIZE]

    def crypto_info(self) -> tuple[FormatType, MessageType]:
        self._expect(DataType.CRYPTO_MESSAGE)
        fmt, msg = CRYPTO_STRUCT.unpack_from(self.extra)
        return FormatType(fmt), MessageType(msg)

    def sbom_format(self) -> str:
        self._expect(DataType.SBOM)
        return sbom_format_name(SBOM_STRUCT.unpack_from(self.extra)[0])

    def oci_digest(self) -> str:
        self._expect(DataType.OCI_ROOT_INDEX, DataType.OCI_BLOB)
        return _text(self.extra)

    def is_partition_of(self, part: PartType) -> bool:
        return self.data_type == DataType.PARTITION and self.partition_info()[1] == part


def os_reason(err: OSError) -> str:
    """An OSError as Go words it: ``permission denied``."""
    return os.strerror(err.errno).lower() if err.errno else str(err)


def _describe_os_error(path: str, err: OSError) -> str:
    return f"could not open image {path}: {os_reason(err)}"


def _open_fd(path: str, writable: bool) -> int:
    # O_NONBLOCK: a FIFO given as an image must not hang us in open().
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotFoundError(f"image {path} does not exist") from None
    except PermissionError as err:
        raise UsageError(_describe_os_error(path, err)) from None
    except OSError as err:
        if err.errno == errno.EISDIR:
            raise SifFormatError(f"{path} is a directory, not a SIF image") from None
        raise SifFormatError(_describe_os_error(path, err)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise SifFormatError(f"{path} is a directory, not a SIF image")
        raise SifFormatError(f"{path} is not a regular file, so not a SIF image")
    return fd


class SifImage:
    """An open SIF image; use as a context manager."""

    def __init__(self, path: str, fd: int, header: Header, slots: list[bytes],
                 descriptors: list[Descriptor], file_size: int) -> None:
        self.path = path
        self.header = header
        self.descriptors = descriptors
        self.file_size = file_size
        self._fd = fd
        self._slots = slots  # raw bytes of every table entry, used or not

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writable: bool = False) -> SifImage:
        name = os.fspath(path)
        fd = _open_fd(name, writable)
        try:
            return cls._load(name, fd)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_fd(cls, fd: int, name: str) -> SifImage:
        """The image open as *fd* (a copy of the descriptor: closing the
        image leaves *fd* open), named *name* in messages.  Whoever verified
        an image through *fd* reads exactly what was verified, whatever
        happens to *name* meanwhile."""
        own = os.dup(fd)
        try:
            if not stat.S_ISREG(os.fstat(own).st_mode):
                raise SifFormatError(f"{name} is not a regular file, so not a SIF image")
            return cls._load(name, own)
        except BaseException:
            os.close(own)
            raise

    @classmethod
    def _load(cls, path: str, fd: int) -> SifImage:
        size = os.fstat(fd).st_size
        try:
            raw = os.pread(fd, HEADER_SIZE, 0)
            if len(raw) < HEADER_SIZE:
                raise SifFormatError("reading global header: file is truncated")
            header = Header.parse(raw)
            _check_header(header, size)
            table = os.pread(fd, header.descriptors_total * DESCRIPTOR_SIZE,
                             header.descriptors_offset)
        except SifFormatError as err:
            raise SifFormatError(f"invalid SIF image {path}: {err}") from None
        except OSError as err:
            raise SifFormatError(f"could not read image {path}: {os_reason(err)}") from None
        if len(table) < header.descriptors_total * DESCRIPTOR_SIZE:
            raise SifFormatError(f"invalid SIF image {path}: reading descriptors: "
                                 "file is truncated")
        slots = [table[i:i + DESCRIPTOR_SIZE] for i in range(0, len(table), DESCRIPTOR_SIZE)]
        descriptors = [Descriptor.parse(raw, i) for i, raw in enumerate(slots) if raw[4]]
        try:
            _check_descriptors(header, descriptors, size)
        except SifFormatError as err:
            raise SifFormatError(f"invalid SIF image {path}: {err}") from None
        return cls(path, fd, header, slots, descriptors, size)

    def __enter__(self) -> SifImage:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on a closed SIF image")
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def get(self, id: int) -> Descriptor:
        """The object with this ID (:class:`NotFoundError` if none)."""
        for descriptor in self.descriptors:
            if descriptor.id == id:
                return descriptor
        if id == 0:
            raise NotFoundError(f"invalid object ID 0 in {self.path}")
        raise NotFoundError(f"object {id} not found in {self.path}")

    def select(self, *, data_type: DataType | None = None, group_id: int | None = None,
               part_type: PartType | None = None, linked_id: int | None = None,
               linked_is_group: bool | None = None) -> list[Descriptor]:
        """Objects matching every given criterion, in table order.

        ``group_id=0`` selects objects in no group.  ``linked_id`` matches
        object and group links alike unless ``linked_is_group`` says which.
        """
        found = []
        for d in self.descriptors:
            if data_type is not None and d.data_type != data_type:
                continue
            if group_id is not None and d.group_id != group_id:
                continue
            if linked_id is not None and d.linked_id != linked_id:
                continue
            if linked_is_group is not None and d.linked_is_group != linked_is_group:
                continue
            if part_type is not None and not d.is_partition_of(part_type):
                continue
            found.append(d)
        return found

    def primary_partition(self) -> Descriptor:
        """The primary system partition (:class:`NotFoundError` if none)."""
        found = self.select(data_type=DataType.PARTITION, part_type=PartType.PRIMSYS)
        if not found:
            raise NotFoundError(f"{self.path} has no primary partition")
        if len(found) > 1:
            raise SifFormatError(f"{self.path} has more than one primary partition")
        return found[0]

    def read(self, d: Descriptor) -> bytes:
        """The whole content of object *d*."""
        return b"".join(self.stream(d))

    def stream(self, d: Descriptor, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The content of object *d*, in pieces of at most *chunk* bytes."""
        fd = self.fileno()
        position, end = d.offset, d.offset + d.size
        while position < end:
            data = os.pread(fd, min(chunk, end - position), position)
            if not data:
                raise SifFormatError(f"invalid SIF image {self.path}: object {d.id} is truncated")
            position += len(data)
            yield data

    def slot(self, index: int) -> bytes:
        """The raw bytes of table entry *index* (used or free)."""
        return self._slots[index]

    @property
    def slot_count(self) -> int:
        return len(self._slots)


def _check_header(h: Header, file_size: int) -> None:
    if h.descriptors_total < 0 or h.descriptors_total > MAX_DESCRIPTORS:
        raise SifFormatError(f"absurd descriptor count {h.descriptors_total}")
    if not 0 <= h.descriptors_free <= h.descriptors_total:
        raise SifFormatError(
            f"absurd free descriptor count {h.descriptors_free} of {h.descriptors_total}")
    table = h.descriptors_total * DESCRIPTOR_SIZE
    if h.descriptors_offset < HEADER_SIZE or h.descriptors_size < table:
        raise SifFormatError("descriptor table overlaps the header or is too small")
    if h.descriptors_offset + table > file_size:
        raise SifFormatError("reading descriptors: file is truncated")
    if h.data_offset < 0 or h.data_size < 0:
        raise SifFormatError("negative data offset or size")


def _check_descriptors(h: Header, descriptors: list[Descriptor], file_size: int) -> None:
    seen: set[int] = set()
    table_end = h.descriptors_offset + h.descriptors_total * DESCRIPTOR_SIZE
    for d in descriptors:
        if d.id == 0 or d.id in seen:
            raise SifFormatError(f"invalid or duplicate object ID {d.id}")
        seen.add(d.id)
        if d.offset < 0 or d.size < 0 or d.size_with_padding < d.size:
            raise SifFormatError(f"object {d.id} has a negative offset or size")
        # An empty object may sit past the end: its alignment padding was never
        # written (the reference writes images so).
        if d.size and d.offset + d.size > file_size:
            raise SifFormatError(f"object {d.id} points past the end of the file")
        if d.size and (d.offset < HEADER_SIZE or
                       (d.offset < table_end and d.offset + d.size > h.descriptors_offset)):
            raise SifFormatError(f"object {d.id} overlaps the header or the descriptors")
    spans = sorted((d.offset, d.offset + d.size, d.id) for d in descriptors if d.size)
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise SifFormatError(f"objects {first} and {second} overlap")
    if len(descriptors) != h.descriptors_total - h.descriptors_free:
        raise SifFormatError(
            f"header says {h.descriptors_total - h.descriptors_free} descriptors are used, "
            f"the table has {len(descriptors)}")


# Writing is its own module (capsa.sif.writer), loaded only when asked for:
# ``capsa.sif`` re-exports both.
__all__ = ["Descriptor", "Header", "SifImage"]
