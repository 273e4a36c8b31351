"""Reading the reference corpus: every image opens and prints as siftool does."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsa.errors import NotFoundError, UsageError
from capsa.sif import DataType, FSType, HashType, NewObject, PartType, SifImage, create
from capsa.sif.show import header_text, info_text, list_text
from sif.corpus import GOLDEN, IMAGES, INFO_CASES, golden_names, image_for

pytestmark = pytest.mark.needs_shared


def all_images() -> list[str]:
    return sorted(p.name for p in IMAGES.glob("*.sif")) if IMAGES.is_dir() else []


@pytest.mark.parametrize("name", all_images())
def test_every_reference_image_opens(name: str) -> None:
    with SifImage.open(IMAGES / name) as image:
        assert image.header.version == "01"
        used = image.header.descriptors_total - image.header.descriptors_free
        assert len(image.descriptors) == used
        for d in image.descriptors:
            assert len(image.read(d)) == d.size
            assert len(d.raw()) == 585


@pytest.mark.parametrize("name", golden_names("List"))
def test_list_matches_siftool_golden(name: str) -> None:
    with SifImage.open(IMAGES / image_for(name)) as image:
        text = list_text(image.descriptors)
    assert text == (GOLDEN / "TestApp_List" / f"{name}.golden").read_text()


@pytest.mark.parametrize("name", golden_names("Header"))
def test_header_matches_siftool_golden(name: str) -> None:
    with SifImage.open(IMAGES / image_for(name)) as image:
        text = header_text(image.header)
    assert text == (GOLDEN / "TestApp_Header" / f"{name}.golden").read_text()


@pytest.mark.parametrize("name", sorted(INFO_CASES))
def test_info_matches_siftool_golden(name: str, interop: Path) -> None:
    image_name, object_id = INFO_CASES[name]
    with SifImage.open(IMAGES / image_name) as image:
        text = info_text(image.get(object_id))
    assert text == (GOLDEN / "TestApp_Info" / f"{name}.golden").read_text()


def test_signature_info_golden_on_a_rebuilt_signed_image(tmp_path: Path) -> None:
    """DataSignature.golden comes from two-groups-signed-pgp.sif, which the corpus
    lacks: add an equal signature object to two-groups.sif and compare."""
    path = tmp_path / "signed.sif"
    path.write_bytes((IMAGES / "two-groups.sif").read_bytes())
    from capsa.sif import add_objects

    ids = add_objects(path, [NewObject(
        DataType.SIGNATURE, data=b"s" * 1048, group_id=0, linked_id=1, linked_is_group=True,
        hash_type=HashType.SHA256,
        fingerprint=bytes.fromhex("12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"))])
    assert ids == [4]
    with SifImage.open(path) as image:
        text = info_text(image.get(4))
    assert text == (GOLDEN / "TestApp_Info" / "DataSignature.golden").read_text()


def test_queries_on_two_groups() -> None:
    with SifImage.open(IMAGES / "two-groups.sif") as image:
        assert image.header.arch == "01"
        primary = image.primary_partition()
        assert primary.id == 2
        assert primary.partition_info() == (FSType.SQUASHFS, PartType.PRIMSYS, "01")
        assert [d.id for d in image.select(group_id=1)] == [1, 2]
        assert [d.id for d in image.select(group_id=2)] == [3]
        assert [d.id for d in image.select(part_type=PartType.SYSTEM)] == [1, 3]
        assert image.select(data_type=DataType.SIGNATURE) == []
        with pytest.raises(NotFoundError):
            image.get(9)
        with pytest.raises(NotFoundError):
            image.get(0)
        with pytest.raises(UsageError):
            primary.signature_info()
        chunks = list(image.stream(image.get(3), chunk=100_000))
        assert [len(c) for c in chunks] == [100_000, 100_000, 62_144]
        assert b"".join(chunks) == image.read(image.get(3))


def test_signature_links_and_fingerprints() -> None:
    with SifImage.open(IMAGES / "one-group-signed-pgp.sif") as image:
        (sig,) = image.select(data_type=DataType.SIGNATURE)
        assert (sig.group_id, sig.linked_id, sig.linked_is_group) == (0, 1, True)
        assert image.select(linked_id=1, linked_is_group=True) == [sig]
        assert image.select(linked_id=1, linked_is_group=False) == []
        hash_type, fingerprint = sig.signature_info()
        assert hash_type == HashType.SHA256 and len(fingerprint) == 20
        assert image.read(sig).startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")


def test_no_primary_partition_is_not_found() -> None:
    with SifImage.open(IMAGES / "one-object-sbom.sif") as image:
        with pytest.raises(NotFoundError):
            image.primary_partition()
        assert image.get(1).sbom_format() == "cyclonedx-json"


def _rebuild(image: SifImage) -> list[NewObject]:
    objects = []
    for d in image.descriptors:
        extra: dict[str, object] = {}
        if d.data_type == DataType.PARTITION:
            fs, part, arch = d.partition_info()
            extra = {"fs_type": fs, "part_type": part, "arch": arch}
        elif d.data_type == DataType.SIGNATURE:
            hash_type, fingerprint = d.signature_info()
            extra = {"hash_type": hash_type, "fingerprint": fingerprint}
        elif d.data_type == DataType.CRYPTO_MESSAGE:
            fmt, msg = d.crypto_info()
            extra = {"format_type": fmt, "message_type": msg}
        elif d.data_type == DataType.SBOM:
            extra = {"sbom_format": d.sbom_format()}
        elif d.data_type in (DataType.OCI_BLOB, DataType.OCI_ROOT_INDEX):
            extra = {"oci_digest": d.oci_digest()}
        objects.append(NewObject(
            d.data_type, data=image.read(d), name=d.name, group_id=d.group_id,
            linked_id=d.linked_id, linked_is_group=d.linked_is_group, **extra))  # type: ignore[arg-type]
    return objects


# Written by today's sylabs/sif (the legacy-signed ones by an old version).
MODERN = [n for n in all_images() if "legacy" not in n]


@pytest.mark.parametrize("name", MODERN)
def test_writing_the_same_objects_gives_the_reference_bytes(name: str, tmp_path: Path) -> None:
    with SifImage.open(IMAGES / name) as image:
        h = image.header
        out = tmp_path / name
        create(out, _rebuild(image), id=h.id, time=h.created_at,
               launch_script=h.launch_script, descriptors=h.descriptors_total)
    assert out.read_bytes() == (IMAGES / name).read_bytes()


def test_deterministic_create_reproduces_one_group(tmp_path: Path) -> None:
    with SifImage.open(IMAGES / "one-group.sif") as image:
        objects = _rebuild(image)
    create(tmp_path / "a.sif", objects, deterministic=True, launch_script=b"")
    assert (tmp_path / "a.sif").read_bytes() == (IMAGES / "one-group.sif").read_bytes()
