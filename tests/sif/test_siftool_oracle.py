"""siftool as an oracle: random (valid) headers and descriptors print the same.

Images are built byte by byte with random types (known and not), link and
group flags, names full of tabs and newlines, times from year -9999 to 99999,
and compared with what Debian's siftool prints for list, header and info.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capsa.errors import SifFormatError
from capsa.sif import (
    DataType,
    FormatType,
    FSType,
    HashType,
    MessageType,
    NewObject,
    PartType,
    SifImage,
    create,
)
from capsa.sif.format import (
    DESCRIPTOR_STRUCT,
    GO_ZERO_TIME,
    HEADER_STRUCT,
    MAGIC,
    SBOM_FORMATS,
    VERSION,
)
from capsa.sif.show import header_text, info_text, list_text

TIMES = st.one_of(st.just(GO_ZERO_TIME), st.just(0),
                  st.integers(-377705116800, 3093527980800))
SMALL_ENUM = st.one_of(st.integers(0, 6), st.integers(-(1 << 31), (1 << 31) - 1))
TEXT = st.text(alphabet="ab \t\n:|-é", max_size=40)
# ("13", loong64, is newer than siftool 2.8)
ARCH = st.sampled_from([b"00", b"01", b"02", b"04", b"12", b"99", b"", b"2", b"0"])


@st.composite
def descriptor_fields(draw: st.DrawFn) -> dict[str, object]:
    return {
        # siftool 2.8 predates the OCI types (0x400a, 0x400b): it calls them Unknown
        "type": draw(st.one_of(st.integers(0x4001, 0x4009), st.integers(0x400C, 0x7FFFFFFF),
                               st.integers(0, 0x4000))),
        "group": draw(st.sampled_from([0, 1, 2, 0x0FFFFFFF])) | 0xF0000000,
        "link": draw(st.sampled_from([0, 1, 3, 0xF0000001, 0xF0000000, 0x0FFFFFFF])),
        "size": draw(st.integers(0, 40)),
        "times": (draw(TIMES), draw(TIMES)),
        "name": draw(TEXT).encode()[:128],
        "extra": draw(st.one_of(
            st.tuples(SMALL_ENUM, SMALL_ENUM, ARCH).map(
                lambda t: t[0].to_bytes(4, "little", signed=True)
                + t[1].to_bytes(4, "little", signed=True) + t[2]),
            st.binary(max_size=40),
            st.sampled_from([b"sha256:" + b"ab" * 32, (0x100).to_bytes(4, "little") * 2]),
        )),
    }


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, object]:
    """What an image holds (shown when a case fails, unlike its 30 KiB of bytes)."""
    return {
        "fields": draw(st.lists(descriptor_fields(), max_size=5)),
        "spare": draw(st.integers(0, 2)),
        "script": draw(st.text(alphabet="#!/ab\t\n", max_size=31)).encode()[:31],
        "arch": draw(ARCH),
        "id": draw(st.binary(min_size=16, max_size=16) | st.just(bytes(16))),
        "times": (draw(TIMES), draw(TIMES)),
    }


def build(layout: dict[str, object]) -> bytes:
    fields: list[dict[str, object]] = layout["fields"]  # type: ignore[assignment]
    total = len(fields) + int(layout["spare"])  # type: ignore[call-overload]
    data_offset = 4096 + total * 585
    table, data, offset = b"", b"", data_offset
    for i, f in enumerate(fields):
        size = int(f["size"])  # type: ignore[call-overload]
        created, modified = f["times"]  # type: ignore[misc]
        table += DESCRIPTOR_STRUCT.pack(f["type"], 1, i + 1, f["group"], f["link"], offset, size,
                                        size, created, modified, 0, 0, f["name"], f["extra"])
        data += bytes([i + 65]) * size
        offset += size
    table += bytes(585 * (total - len(fields)))
    created, modified = layout["times"]  # type: ignore[misc]
    header = HEADER_STRUCT.pack(layout["script"], MAGIC, VERSION, layout["arch"], layout["id"],
                                created, modified, total - len(fields), total, 4096, total * 585,
                                data_offset, len(data))
    return header + bytes(4096 - 128) + table + data


def siftool(*args: str) -> tuple[int, bytes]:
    done = subprocess.run(["siftool", *args], capture_output=True, check=False)
    return done.returncode, done.stdout


@pytest.mark.usefixtures("siftool")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_capsa_prints_what_siftool_prints(layout: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "x.sif"
        path.write_bytes(build(layout))
        with SifImage.open(path) as image:
            assert siftool("header", str(path)) == (0, header_text(image.header).encode())
            assert siftool("list", str(path)) == (0, list_text(image.descriptors).encode())
            for d in image.descriptors:
                code, out = siftool("info", str(d.id), str(path))
                if code != 0:
                    with pytest.raises(SifFormatError):
                        info_text(d)
                else:
                    assert out == info_text(d).encode()


KNOWN_TYPES = [t for t in DataType if t not in (DataType.OCI_ROOT_INDEX, DataType.OCI_BLOB)]


@st.composite
def new_objects(draw: st.DrawFn) -> NewObject:
    data_type = draw(st.sampled_from(KNOWN_TYPES))
    extra: dict[str, object] = {}
    if data_type == DataType.PARTITION:
        extra = {"fs_type": draw(st.sampled_from(list(FSType))),
                 "part_type": draw(st.sampled_from([PartType.SYSTEM, PartType.DATA,
                                                    PartType.OVERLAY])),
                 "arch": draw(st.sampled_from(["386", "amd64", "arm64", "riscv64", "s390x"]))}
    elif data_type == DataType.SIGNATURE:
        extra = {"hash_type": draw(st.sampled_from(list(HashType))),
                 "fingerprint": draw(st.binary(max_size=20))}
    elif data_type == DataType.CRYPTO_MESSAGE:
        extra = {"format_type": draw(st.sampled_from(list(FormatType))),
                 "message_type": draw(st.sampled_from(list(MessageType)))}
    elif data_type == DataType.SBOM:
        extra = {"sbom_format": draw(st.sampled_from(sorted(SBOM_FORMATS.values())))}
    return NewObject(
        data_type, data=draw(st.binary(max_size=300)), name=draw(TEXT),
        group_id=draw(st.integers(0, 3)), linked_id=draw(st.integers(0, 3)),
        linked_is_group=draw(st.booleans()), alignment=draw(st.sampled_from([0, 1, 8, 512])),
        **extra)  # type: ignore[arg-type]


@pytest.mark.usefixtures("siftool")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(new_objects(), max_size=6), st.booleans())
def test_what_capsa_writes_reads_back_the_same_in_both(objects: list[NewObject],
                                                        deterministic: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "x.sif"
        create(path, objects, deterministic=deterministic, descriptors=8)
        with SifImage.open(path) as image:
            assert siftool("header", str(path)) == (0, header_text(image.header).encode())
            assert siftool("list", str(path)) == (0, list_text(image.descriptors).encode())
            for obj, d in zip(objects, image.descriptors, strict=True):
                assert (d.data_type, d.group_id, d.linked_id, d.linked_is_group) == \
                    (obj.data_type, obj.group_id, obj.linked_id, obj.linked_is_group)
                assert d.name == obj.name and image.read(d) == obj.data
                assert siftool("dump", str(d.id), str(path)) == (0, obj.data)
                assert siftool("info", str(d.id), str(path)) == (0, info_text(d).encode())
        if deterministic:
            again = Path(scratch) / "y.sif"
            create(again, objects, deterministic=True, descriptors=8)
            assert again.read_bytes() == path.read_bytes()
