"""The exec path's quick partition locator agrees with the full reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capsa.sif import DataType, FSType, NewObject, PartType, SifImage, create
from capsa.sif.locate import PartitionLocation, quick_primary_partition


def _image(path: Path, *, primary: bool) -> Path:
    objects = [
        NewObject(DataType.DEFFILE, data=b"Bootstrap: scratch\n"),
        NewObject(DataType.PARTITION, data=b"hsqs" + bytes(60), fs_type=FSType.SQUASHFS,
                  part_type=PartType.PRIMSYS if primary else PartType.DATA, arch="arm64"),
    ]
    create(path, objects, deterministic=True)
    return path


def _locate(path: Path) -> PartitionLocation | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return quick_primary_partition(fd)
    finally:
        os.close(fd)


def test_quick_locator_matches_the_full_reader(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.sif", primary=True)
    found = _locate(path)
    with SifImage.open(path) as sif:
        part = sif.primary_partition()
    assert found is not None
    assert (found.offset, found.size, found.fs_type, found.arch) == (
        part.offset, part.size, FSType.SQUASHFS, "04")


def test_no_primary_partition_is_left_to_the_full_reader(tmp_path: Path) -> None:
    assert _locate(_image(tmp_path / "b.sif", primary=False)) is None


@pytest.mark.parametrize("cut", [0, 40, 128, 4096 + 100])
def test_truncated_files_are_left_to_the_full_reader(tmp_path: Path, cut: int) -> None:
    path = _image(tmp_path / "c.sif", primary=True)
    path.write_bytes(path.read_bytes()[:cut])
    assert _locate(path) is None


def test_unreadable_descriptor(tmp_path: Path) -> None:
    assert quick_primary_partition(-1) is None
