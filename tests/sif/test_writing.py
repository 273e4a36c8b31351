"""Writing images: create, add, delete, set primary, and failing cleanly."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from capsa.errors import NotFoundError, UsageError
from capsa.sif import (
    DEFAULT_LAUNCH_SCRIPT,
    DataType,
    FormatType,
    FSType,
    HashType,
    MessageType,
    NewObject,
    PartType,
    SifImage,
    add_objects,
    create,
    delete_object,
    set_primary,
)
from capsa.sif.format import GO_ZERO_TIME


def partition(data: bytes, part: PartType = PartType.PRIMSYS, arch: str = "amd64",
              **kw: object) -> NewObject:
    return NewObject(DataType.PARTITION, data=data, fs_type=FSType.SQUASHFS, part_type=part,
                     arch=arch, **kw)  # type: ignore[arg-type]


OBJECTS = [
    NewObject(DataType.DEFFILE, data=b"Bootstrap: docker\nFrom: alpine\n"),
    NewObject(DataType.GENERIC_JSON, data=b"{}", name="inspect-metadata.json"),
    partition(b"hsqs" + bytes(5000)),
    NewObject(DataType.SIGNATURE, data=b"sig", group_id=0, linked_id=1, linked_is_group=True,
              hash_type=HashType.SHA256, fingerprint=bytes(range(20))),
    NewObject(DataType.CRYPTO_MESSAGE, data=b"key", format_type=FormatType.PEM,
              message_type=MessageType.RSA_OAEP),
    NewObject(DataType.SBOM, data=b"{}", sbom_format="spdx-json"),
    NewObject(DataType.OCI_BLOB, data=b"blob", oci_digest="sha256:" + "a" * 64),
]


def test_deterministic_images_are_byte_identical(tmp_path: Path) -> None:
    create(tmp_path / "a.sif", OBJECTS, deterministic=True)
    create(tmp_path / "b.sif", OBJECTS, deterministic=True)
    assert (tmp_path / "a.sif").read_bytes() == (tmp_path / "b.sif").read_bytes()
    with SifImage.open(tmp_path / "a.sif") as image:
        h = image.header
        assert h.id == uuid.UUID(int=0)
        assert h.created_at == h.modified_at == GO_ZERO_TIME
        assert all(d.created_at == GO_ZERO_TIME for d in image.descriptors)


def test_create_lays_out_objects_as_the_reference(tmp_path: Path) -> None:
    before = int(time.time())
    create(tmp_path / "a.sif", OBJECTS)
    with SifImage.open(tmp_path / "a.sif") as image:
        h = image.header
        assert h.launch_script == DEFAULT_LAUNCH_SCRIPT
        assert h.id.int != 0 and before <= h.created_at <= int(time.time())
        assert (h.descriptors_offset, h.descriptors_total, h.data_offset) == (4096, 48, 32176)
        assert h.descriptors_free == 48 - len(OBJECTS)
        assert h.arch == "02"  # the primary partition's
        ds = image.descriptors
        assert [d.id for d in ds] == list(range(1, len(OBJECTS) + 1))
        assert ds[0].offset == 32176 and ds[0].group_id == 1
        assert ds[2].offset % 4096 == 0  # partitions are aligned
        assert ds[2].size_with_padding == ds[2].offset - (ds[1].offset + ds[1].size) + 5004
        assert h.data_size == sum(d.size_with_padding for d in ds)
        assert all(d.uid == 0 and d.gid == 0 for d in ds)
        assert image.read(ds[0]) == OBJECTS[0].data
        assert ds[1].name == "inspect-metadata.json"
        assert ds[3].signature_info() == (HashType.SHA256, bytes(range(20)))
        assert ds[4].crypto_info() == (FormatType.PEM, MessageType.RSA_OAEP)
        assert ds[5].sbom_format() == "spdx-json"
        assert ds[6].oci_digest() == "sha256:" + "a" * 64
    mode = os.stat(tmp_path / "a.sif").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o755 & ~umask


def test_create_copies_a_file_object(tmp_path: Path) -> None:
    source = tmp_path / "rootfs.squashfs"
    payload = os.urandom(1 << 16) * 40  # 2.5 MiB
    source.write_bytes(payload)
    create(tmp_path / "a.sif", [NewObject(DataType.PARTITION, path=str(source),
                                          fs_type=FSType.SQUASHFS, part_type=PartType.PRIMSYS,
                                          arch="arm64")])
    with SifImage.open(tmp_path / "a.sif") as image:
        d = image.primary_partition()
        assert d.size == len(payload) and d.offset == 32768
        assert image.read(d) == payload
        assert image.header.arch == "04"


@pytest.mark.parametrize("objects, error", [
    ([NewObject(DataType.GENERIC, name="x" * 129)], UsageError),
    ([NewObject(DataType.PARTITION)], UsageError),
    ([NewObject(DataType.GENERIC, path="/nonexistent/file")], NotFoundError),
    ([partition(b"a"), partition(b"b")], UsageError),  # two primary partitions
    ([partition(b"a", arch="vax")], UsageError),
    ([NewObject(DataType.SBOM, sbom_format="nope")], UsageError),
    ([NewObject(DataType.GENERIC)] * 3, UsageError),  # more than 2 descriptors
])
def test_a_failed_create_leaves_nothing(tmp_path: Path, objects: list[NewObject],
                                        error: type[Exception]) -> None:
    with pytest.raises(error):
        create(tmp_path / "a.sif", objects, descriptors=2)
    assert list(tmp_path.iterdir()) == []


def test_create_refuses_a_long_launch_script(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        create(tmp_path / "a.sif", [], launch_script=b"#" * 32)
    with pytest.raises(NotFoundError):
        create(tmp_path / "missing" / "a.sif", [])


def test_create_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "a.sif").write_bytes(b"old")
    create(tmp_path / "a.sif", [])
    assert (tmp_path / "a.sif").stat().st_size == 32176


def test_add_appends_and_updates_the_header(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [NewObject(DataType.DEFFILE, data=b"def")], time=1000)
    ids = add_objects(path, [partition(b"p" * 10), NewObject(DataType.GENERIC, data=b"g")])
    assert ids == [2, 3]
    with SifImage.open(path) as image:
        h = image.header
        assert h.created_at == 1000 and h.modified_at >= int(time.time()) - 5
        assert h.descriptors_free == 45 and h.arch == "02"
        assert image.get(2).offset == 32768 and image.get(3).offset == 32778
        assert image.read(image.get(3)) == b"g"
        assert h.data_size == image.get(3).offset + 1 - h.data_offset


def test_add_to_a_deterministic_image_stays_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [], deterministic=True)
    add_objects(path, [NewObject(DataType.GENERIC, data=b"x")])
    with SifImage.open(path) as image:
        assert image.header.modified_at == GO_ZERO_TIME
        assert image.get(1).created_at == GO_ZERO_TIME


def test_a_failed_add_leaves_the_image_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [partition(b"a")])
    before = path.read_bytes()
    with pytest.raises(UsageError, match="primary partition"):
        add_objects(path, [NewObject(DataType.GENERIC, data=b"x" * 9000), partition(b"b")])
    assert path.read_bytes() == before
    with pytest.raises(NotFoundError):
        add_objects(path, [NewObject(DataType.GENERIC, path=str(tmp_path / "missing"))])
    assert path.read_bytes() == before


def test_add_refuses_when_the_table_is_full(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [NewObject(DataType.GENERIC, data=b"1")], descriptors=1)
    before = path.read_bytes()
    with pytest.raises(UsageError, match="capacity"):
        add_objects(path, [NewObject(DataType.GENERIC, data=b"2")])
    assert path.read_bytes() == before


def test_delete_frees_the_slot_and_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [NewObject(DataType.GENERIC, data=b"1"), NewObject(DataType.GENERIC, data=b"2"),
                  NewObject(DataType.GENERIC, data=b"3")])
    delete_object(path, 2, zero=True)
    with SifImage.open(path) as image:
        assert [d.id for d in image.descriptors] == [1, 3]
        assert image.header.descriptors_free == 46
        assert path.read_bytes()[32177:32178] == b"\x00"  # zeroed
    assert add_objects(path, [NewObject(DataType.GENERIC, data=b"4")]) == [2]
    with pytest.raises(NotFoundError):
        delete_object(path, 7)


def test_delete_compact_only_for_the_last_object(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [NewObject(DataType.GENERIC, data=b"1"), partition(b"2" * 100)])
    before = path.read_bytes()
    with pytest.raises(UsageError, match="compact"):
        delete_object(path, 1, compact=True)
    assert path.read_bytes() == before
    delete_object(path, 2, compact=True)
    with SifImage.open(path) as image:
        assert image.header.arch == "00"  # no primary partition any more
        assert image.header.data_size == 1
        assert image.file_size == 32177


def test_set_primary_swaps_the_primary_partition(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [partition(b"a", PartType.SYSTEM, "arm64"), partition(b"b", arch="amd64"),
                  partition(b"c", PartType.DATA)])
    set_primary(path, 1)
    with SifImage.open(path) as image:
        assert image.header.arch == "04"
        assert image.get(1).partition_info() == (FSType.SQUASHFS, PartType.PRIMSYS, "04")
        assert image.get(2).partition_info() == (FSType.SQUASHFS, PartType.SYSTEM, "02")
    before = path.read_bytes()
    set_primary(path, 1)  # already primary: nothing changes
    assert path.read_bytes() == before
    with pytest.raises(UsageError, match="not a system partition"):
        set_primary(path, 3)
    create(path, [NewObject(DataType.GENERIC, data=b"x")])
    with pytest.raises(UsageError, match="not a partition"):
        set_primary(path, 1)


def test_adding_an_image_to_itself_copies_its_old_content(tmp_path: Path) -> None:
    path = tmp_path / "a.sif"
    create(path, [NewObject(DataType.GENERIC, data=b"x" * 100)])
    before = path.read_bytes()
    (new_id,) = add_objects(path, [NewObject(DataType.GENERIC, path=str(path))])
    with SifImage.open(path) as image:
        assert image.read(image.get(new_id)) == before
