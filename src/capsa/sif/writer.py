"""Writing SIF images as sylabs/sif does: create, add, delete, set primary.

Layout rules kept from the reference: descriptors start at 4096 and there
are 48 of them by default, so data starts at 32176; an object is placed at
the end of the data section, moved up to its alignment (4096 for
partitions, none otherwise); a new object takes the first free table slot
and its ID is that slot's index + 1; UID and GID are always 0; object times
are the image's time.  A deterministic image has the nil UUID and Go's zero
time (-62135596800) everywhere, so identical input gives identical bytes.

Failure safety: :func:`create` writes a temporary file beside the target
and renames it.  The in-place edits write new data past the old end first
and the table and header last, truncating back on failure.
"""

from __future__ import annotations

import os
import stat
import time as _time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from capsa.errors import NotFoundError, SifFormatError, UsageError
from capsa.sif.format import (
    ARCH_UNKNOWN,
    CRYPTO_STRUCT,
    DEFAULT_DESCRIPTORS,
    DEFAULT_DESCRIPTORS_OFFSET,
    DEFAULT_LAUNCH_SCRIPT,
    DESCRIPTOR_SIZE,
    DESCRIPTOR_STRUCT,
    ENTITY_SIZE,
    EXTRA_SIZE,
    GO_ZERO_TIME,
    GROUP_MASK,
    HEADER_STRUCT,
    ID_MASK,
    LAUNCH_SCRIPT_SIZE,
    MAGIC,
    NAME_SIZE,
    PARTITION_ALIGNMENT,
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
    arch_code,
    host_goarch,
    sbom_format_code,
)
from capsa.sif.image import Descriptor, Header, SifImage, os_reason, raw_text

_EMPTY_SLOT = bytes(DESCRIPTOR_SIZE)
_COPY_CHUNK = 1 << 24
# How far past the end of the file the data section may claim to reach
# (trailing empty objects leave their padding unwritten, as Go does).
_MAX_DATA_OVERHANG = 1 << 24


@dataclass(frozen=True, slots=True)
class NewObject:
    """A data object to write: its content and its descriptor fields."""

    data_type: DataType
    data: bytes = b""
    path: str | None = None  # copy the content of this file instead of *data*
    name: str = ""
    group_id: int = 1  # 0 = no group
    linked_id: int = 0
    linked_is_group: bool = False
    alignment: int = 0  # 0 = default: 4096 for partitions, none otherwise
    fs_type: FSType | None = None
    part_type: PartType | None = None
    arch: str = ""  # GOARCH name or SIF code; "" = this host
    hash_type: HashType | None = None
    fingerprint: bytes = b""
    format_type: FormatType | None = None
    message_type: MessageType | None = None
    sbom_format: str = ""
    oci_digest: str = ""

    def effective_alignment(self) -> int:
        if self.alignment < 0:
            raise UsageError(f"invalid alignment {self.alignment}")
        if self.alignment == 0 and self.data_type == DataType.PARTITION:
            return PARTITION_ALIGNMENT
        return self.alignment

    def extra(self) -> bytes:
        """The 384-byte type-specific metadata field."""
        return _extra(self).ljust(EXTRA_SIZE, b"\x00")

    def partition_arch(self) -> str:
        return arch_code(self.arch or host_goarch())


def _need(value: object, what: str, obj: NewObject) -> None:
    if value is None:
        raise UsageError(f"a {obj.data_type.name} object needs {what}")


def _extra(obj: NewObject) -> bytes:
    t = obj.data_type
    if t == DataType.PARTITION:
        _need(obj.fs_type, "a filesystem type", obj)
        _need(obj.part_type, "a partition type", obj)
        return PARTITION_STRUCT.pack(int(obj.fs_type or 0), int(obj.part_type or 0),
                                     raw_text(obj.partition_arch()))
    if t == DataType.SIGNATURE:
        _need(obj.hash_type, "a hash type", obj)
        if len(obj.fingerprint) > ENTITY_SIZE:
            raise UsageError("signing entity fingerprint too long")
        return SIGNATURE_STRUCT.pack(int(obj.hash_type or 0), obj.fingerprint)
    if t == DataType.CRYPTO_MESSAGE:
        _need(obj.format_type, "a format type", obj)
        _need(obj.message_type, "a message type", obj)
        return CRYPTO_STRUCT.pack(int(obj.format_type or 0), int(obj.message_type or 0))
    if t == DataType.SBOM:
        if not obj.sbom_format:
            raise UsageError("an SBOM object needs an SBOM format")
        return SBOM_STRUCT.pack(sbom_format_code(obj.sbom_format))
    if t in (DataType.OCI_ROOT_INDEX, DataType.OCI_BLOB):
        digest = raw_text(obj.oci_digest)
        if len(digest) > EXTRA_SIZE:
            raise UsageError("digest value too large")
        return digest
    return b""


def _check_object(obj: NewObject) -> None:
    """Refuse bad input before anything is written."""
    if len(raw_text(obj.name)) > NAME_SIZE:
        raise UsageError(f"object name too long (at most {NAME_SIZE} bytes): {obj.name!r}")
    for value, what in ((obj.group_id, "group ID"), (obj.linked_id, "linked ID")):
        if not 0 <= value <= ID_MASK:
            raise UsageError(f"invalid {what} {value}")
    obj.effective_alignment()
    obj.extra()
    if obj.path is not None and obj.data:
        raise UsageError("an object has either data or a path, not both")
    if obj.path is not None:
        try:
            with open(obj.path, "rb"):
                pass
        except FileNotFoundError:
            raise NotFoundError(f"object file {obj.path} does not exist") from None
        except OSError as err:
            raise UsageError(f"could not read {obj.path}: {os_reason(err)}") from None


def next_aligned(offset: int, alignment: int) -> int:
    """The reference's rounding (exact for powers of two, as it is used)."""
    if alignment and offset % alignment:
        return (offset & ~(alignment - 1)) + alignment
    return offset


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done


def _copy_file(fd: int, source: str, offset: int) -> int:
    """Copy *source* into *fd* at *offset*: in the kernel (copy_file_range, which
    also shares extents on filesystems that can) where it can, by reads otherwise.
    A regular file is copied up to the size it had at the start (it may be the
    image itself); anything else until its end."""
    with open(source, "rb") as src:
        info = os.fstat(src.fileno())
        limit = info.st_size if stat.S_ISREG(info.st_mode) else None
        done = 0
        if limit is not None:
            try:
                while done < limit:
                    n = os.copy_file_range(src.fileno(), fd, min(_COPY_CHUNK, limit - done),
                                           done, offset + done)
                    if n == 0:
                        break
                    done += n
                return done
            except OSError:
                pass  # EXDEV, EINVAL, ENOSYS...: go on with plain reads from where it stopped
            src.seek(done)
        while limit is None or done < limit:
            want = _COPY_CHUNK if limit is None else min(_COPY_CHUNK, limit - done)
            chunk = src.read(want)
            if not chunk:
                break
            _write_all(fd, chunk, offset + done)
            done += len(chunk)
        return done


def _write_object(fd: int, obj: NewObject, offset: int) -> int:
    if obj.path is not None:
        return _copy_file(fd, obj.path, offset)
    _write_all(fd, obj.data, offset)
    return len(obj.data)


class _Table:
    """The header and descriptor slots of an image being written."""

    def __init__(self, header: Header, slots: list[bytes], primary: bool) -> None:
        self.header = header
        self.slots = slots
        self.has_primary = primary
        self.new_ids: list[int] = []

    def free_slot(self) -> int:
        for i, raw in enumerate(self.slots):
            if not raw[4]:
                return i
        raise UsageError("insufficient descriptor capacity to add data object(s) to image")

    def add(self, fd: int, obj: NewObject, t: int) -> None:
        index = self.free_slot()
        arch = None
        if obj.data_type == DataType.PARTITION and obj.part_type == PartType.PRIMSYS:
            if self.has_primary:
                raise UsageError("image already contains a primary partition")
            self.has_primary = True
            arch = obj.partition_arch()
        h = self.header
        start = h.data_offset + h.data_size
        offset = next_aligned(start, obj.effective_alignment())
        size = _write_object(fd, obj, offset)
        padded = offset - start + size
        link = obj.linked_id | (GROUP_MASK if obj.linked_is_group else 0)
        self.slots[index] = DESCRIPTOR_STRUCT.pack(
            int(obj.data_type), 1, index + 1, obj.group_id | GROUP_MASK, link, offset, size,
            padded, t, t, 0, 0, raw_text(obj.name), obj.extra())
        self.new_ids.append(index + 1)
        self.header = _replace(h, descriptors_free=h.descriptors_free - 1,
                               data_size=h.data_size + padded,
                               arch=arch if arch is not None else h.arch)

    def write(self, fd: int) -> None:
        _write_all(fd, b"".join(self.slots), self.header.descriptors_offset)
        _write_all(fd, _pack_header(self.header), 0)


def _replace(h: Header, **changes: object) -> Header:
    return replace(h, _raw=b"", **changes)  # type: ignore[arg-type]


def _pack_header(h: Header) -> bytes:
    return HEADER_STRUCT.pack(
        h.launch_script, MAGIC, VERSION, raw_text(h.arch), h.id_bytes, h.created_at,
        h.modified_at, h.descriptors_free, h.descriptors_total, h.descriptors_offset,
        h.descriptors_size, h.data_offset, h.data_size)


def _now() -> int:
    return int(_time.time())


# ---------------------------------------------------------------- create


def create(path: str | os.PathLike[str], objects: Sequence[NewObject], *,
           deterministic: bool = False, id: uuid.UUID | None = None,
           time: int | None = None, launch_script: bytes = DEFAULT_LAUNCH_SCRIPT,
           descriptors: int = DEFAULT_DESCRIPTORS) -> None:
    """Write a new SIF image at *path* holding *objects*, in order.

    Written to a temporary file beside *path*, then renamed over it.
    """
    target = os.fspath(path)
    if len(launch_script) >= LAUNCH_SCRIPT_SIZE:
        raise UsageError("launch script too large")
    if not 0 <= descriptors <= 1 << 16:
        raise UsageError(f"invalid descriptor capacity {descriptors}")
    if len(objects) > descriptors:
        raise UsageError("insufficient descriptor capacity to add data object(s) to image")
    for obj in objects:
        _check_object(obj)
    if id is None:
        id = uuid.UUID(int=0) if deterministic else uuid.uuid4()
    if time is None:
        time = GO_ZERO_TIME if deterministic else _now()
    table_size = descriptors * DESCRIPTOR_SIZE
    header = Header(launch_script.rstrip(b"\x00"), "01", ARCH_UNKNOWN, id.bytes, time, time,
                    descriptors, descriptors, DEFAULT_DESCRIPTORS_OFFSET, table_size,
                    DEFAULT_DESCRIPTORS_OFFSET + table_size, 0)
    table = _Table(header, [_EMPTY_SLOT] * descriptors, primary=False)
    _write_new_file(target, table, objects, time)


def _write_new_file(target: str, table: _Table, objects: Sequence[NewObject], t: int) -> None:
    import tempfile

    directory = os.path.dirname(os.path.abspath(target))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                    dir=directory)
    except FileNotFoundError:
        raise NotFoundError(f"directory {directory} does not exist") from None
    except OSError as err:
        raise UsageError(f"could not create {target}: {os_reason(err)}") from None
    try:
        for obj in objects:
            table.add(fd, obj, t)
        table.write(fd)
        os.fchmod(fd, 0o755 & ~_umask())  # as the reference creates images
        os.close(fd)
        fd = -1
        os.replace(temp, target)
    except BaseException as err:
        if fd >= 0:
            os.close(fd)
        os.unlink(temp)
        if isinstance(err, OSError):
            raise UsageError(f"could not write {target}: {os_reason(err)}") from None
        raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race threads)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- in place


def _image_time(image: SifImage, deterministic: bool) -> int:
    """Now, or the zero time for deterministic images (as the reference does)."""
    h = image.header
    if deterministic or (not any(h.id_bytes) and h.created_at == GO_ZERO_TIME
                         and h.modified_at == GO_ZERO_TIME):
        return GO_ZERO_TIME
    return _now()


def _edit(image: SifImage, table: _Table) -> None:
    """Write *table* into *image*; restore the original bytes on failure."""
    fd = image.fileno()
    original_header = image.header.raw()
    original_slots = b"".join(image.slot(i) for i in range(image.slot_count))
    try:
        table.write(fd)
    except BaseException:
        _write_all(fd, original_slots, image.header.descriptors_offset)
        _write_all(fd, original_header, 0)
        raise


def _has_primary(image: SifImage) -> bool:
    return bool(image.select(data_type=DataType.PARTITION, part_type=PartType.PRIMSYS))


def add_objects(path: str | os.PathLike[str], objects: Sequence[NewObject], *,
                deterministic: bool = False) -> list[int]:
    """Append *objects* to the image at *path*; return their new IDs."""
    for obj in objects:
        _check_object(obj)
    with SifImage.open(path, writable=True) as image:
        h = image.header
        _check_data_section(image)
        t = _image_time(image, deterministic)
        slots = [image.slot(i) for i in range(image.slot_count)]
        table = _Table(h, slots, _has_primary(image))
        fd = image.fileno()
        try:
            for obj in objects:
                table.add(fd, obj, t)
            table.header = _replace(table.header, modified_at=t)
            _edit(image, table)
        except BaseException as err:
            os.ftruncate(fd, image.file_size)
            if isinstance(err, OSError):
                raise UsageError(f"could not write {image.path}: {os_reason(err)}") from None
            raise
        return table.new_ids


def _check_data_section(image: SifImage) -> None:
    """Refuse to append to a hostile image: new data goes at the end of the data
    section, which must lie past the table and not far past the end of the file."""
    h = image.header
    end = h.data_offset + h.data_size
    if end < h.descriptors_offset + h.descriptors_total * DESCRIPTOR_SIZE:
        raise SifFormatError(
            f"invalid SIF image {image.path}: data section ends inside the descriptor table")
    if end > image.file_size + _MAX_DATA_OVERHANG:
        raise SifFormatError(
            f"invalid SIF image {image.path}: data section reaches far past the end")


def _is_last(image: SifImage, d: Descriptor) -> bool:
    end = d.offset + d.size
    return all(o.offset + o.size <= end for o in image.descriptors)


def delete_object(path: str | os.PathLike[str], id: int, *, zero: bool = False,
                  compact: bool = False) -> None:
    """Remove object *id*; *zero* its bytes; *compact* (last object only) truncates."""
    with SifImage.open(path, writable=True) as image:
        d = image.get(id)
        if compact and not _is_last(image, d):
            raise UsageError("compact not implemented for non-last object")
        t = _image_time(image, False)
        fd = image.fileno()
        h = image.header
        changes: dict[str, object] = {"descriptors_free": h.descriptors_free + 1,
                                      "modified_at": t}
        if d.is_partition_of(PartType.PRIMSYS):
            changes["arch"] = ARCH_UNKNOWN
        cut = d.offset + d.size - d.size_with_padding
        table_end = h.descriptors_offset + h.descriptors_total * DESCRIPTOR_SIZE
        if compact and (not table_end <= cut <= image.file_size
                        or d.size_with_padding > h.data_size):
            raise SifFormatError(
                f"invalid SIF image {image.path}: object {id} has impossible padding")
        if compact:
            changes["data_size"] = h.data_size - d.size_with_padding
        slots = [image.slot(i) for i in range(image.slot_count)]
        slots[d.index] = _EMPTY_SLOT
        table = _Table(_replace(h, **changes), slots, primary=False)
        try:
            if zero:
                _zero(fd, d.offset, d.size)
            _edit(image, table)
            if compact:
                os.ftruncate(fd, cut)
        except OSError as err:
            raise UsageError(f"could not write {image.path}: {os_reason(err)}") from None


def _zero(fd: int, offset: int, size: int) -> None:
    block = bytes(min(size, 1 << 20))
    while size > 0:
        n = min(size, len(block))
        _write_all(fd, block[:n], offset)
        offset += n
        size -= n


def _with_part_type(raw: bytes, part: PartType, t: int) -> bytes:
    """Descriptor *raw* as partition type *part*, modified at *t*."""
    d = Descriptor.parse(raw)
    fs, _, arch = PARTITION_STRUCT.unpack_from(d.extra)
    extra = PARTITION_STRUCT.pack(fs, int(part), arch).ljust(EXTRA_SIZE, b"\x00")
    return raw[:49] + t.to_bytes(8, "little", signed=True) + raw[57:201] + extra


def set_primary(path: str | os.PathLike[str], id: int) -> None:
    """Make system partition *id* the primary one (the old one becomes System)."""
    with SifImage.open(path, writable=True) as image:
        d = image.get(id)
        if d.data_type != DataType.PARTITION:
            raise UsageError(f"data object {id} is not a partition")
        _, part, arch = d.partition_info()
        if part == PartType.PRIMSYS:
            return
        if part != PartType.SYSTEM:
            raise UsageError(f"data object {id} is not a system partition")
        t = _image_time(image, False)
        slots = [image.slot(i) for i in range(image.slot_count)]
        for old in image.select(data_type=DataType.PARTITION, part_type=PartType.PRIMSYS):
            slots[old.index] = _with_part_type(slots[old.index], PartType.SYSTEM, t)
        slots[d.index] = _with_part_type(slots[d.index], PartType.PRIMSYS, t)
        header = _replace(image.header, arch=arch, modified_at=t)
        try:
            _edit(image, _Table(header, slots, primary=True))
        except OSError as err:
            raise UsageError(f"could not write {image.path}: {os_reason(err)}") from None


__all__ = ["NewObject", "add_objects", "create", "delete_object",
           "next_aligned", "set_primary"]
