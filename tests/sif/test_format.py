"""Constants, enumerations, arch codes and siftool's text helpers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from capsa.errors import UsageError
from capsa.sif import (
    DataType,
    Descriptor,
    FSType,
    Header,
    NewObject,
    PartType,
    SifImage,
    create,
    go_arch,
    host_goarch,
    sif_arch,
)
from capsa.sif.format import (
    DESCRIPTOR_STRUCT,
    GO_ZERO_TIME,
    HEADER_STRUCT,
    MessageType,
    arch_code,
)
from capsa.sif.show import go_time, readable_size, tabwrite
from capsa.sif.writer import next_aligned
from support.env import SRC


def test_record_sizes() -> None:
    assert HEADER_STRUCT.size == 128
    assert DESCRIPTOR_STRUCT.size == 585


def test_enum_values_are_the_references() -> None:
    assert DataType.DEFFILE == 0x4001 and DataType.OCI_BLOB == 0x400B
    assert [int(t) for t in FSType] == [1, 2, 3, 4, 5]
    assert MessageType.RSA_OAEP == 0x200


def test_unknown_enum_values_still_load() -> None:
    odd = DataType(0x4F00)
    assert int(odd) == 0x4F00 and not odd.known and DataType.SBOM.known


@pytest.mark.parametrize("goarch, code", [("386", "01"), ("amd64", "02"), ("arm", "03"),
                                          ("arm64", "04"), ("ppc64le", "06"), ("s390x", "11"),
                                          ("riscv64", "12")])
def test_arch_codes(goarch: str, code: str) -> None:
    assert sif_arch(goarch) == code
    assert go_arch(code) == goarch
    assert arch_code(goarch) == arch_code(code) == code


def test_unknown_arches() -> None:
    assert go_arch("00") == "unknown" and go_arch("99") == "unknown"
    with pytest.raises(UsageError):
        sif_arch("vax")
    assert host_goarch() in ("amd64", "arm64", "386", "arm", "ppc64le", "s390x", "riscv64")


@pytest.mark.parametrize("size, text", [
    (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1 KiB"), (2047, "2 KiB"),
    (28080, "27 KiB"), (8784, "9 KiB"), (1 << 20, "1 MiB"), (1 << 30, "1 GiB"),
    (1 << 40, "1 TiB"), (1 << 50, "1 PiB"), (1 << 60, "1 EiB"), ((1 << 63) - 1, "8 EiB"),
    (-1, "-1 B"), (-2047, "-2 KiB"),
])
def test_readable_size_rounds_as_siftool(size: int, text: str) -> None:
    assert readable_size(size) == text


@pytest.mark.parametrize("seconds, text", [
    (0, "1970-01-01 00:00:00 +0000 UTC"),
    (1593475316, "2020-06-30 00:01:56 +0000 UTC"),
    (951782400, "2000-02-29 00:00:00 +0000 UTC"),
    (GO_ZERO_TIME, "0001-01-01 00:00:00 +0000 UTC"),
    (GO_ZERO_TIME - 86400 * 366, "0000-01-01 00:00:00 +0000 UTC"),
    (GO_ZERO_TIME - 86400 * 731, "-0001-01-01 00:00:00 +0000 UTC"),
    (253402300800, "10000-01-01 00:00:00 +0000 UTC"),
])
def test_go_time(seconds: int, text: str) -> None:
    assert go_time(seconds) == text


def test_tabwrite_aligns_like_go() -> None:
    assert tabwrite("a:\t1\nlonger:\t2\n", 1) == "a:      1\nlonger: 2\n"
    assert tabwrite("\tA:\tx\n\tBB:\ty\n", 2) == "  A:   x\n  BB:  y\n"
    # a line without cells ends the column block
    assert tabwrite("a\tb\nplain\nccc\td\n", 1) == "a b\nplain\nccc d\n"


def test_next_aligned() -> None:
    assert next_aligned(32176, 4096) == 32768
    assert next_aligned(32768, 4096) == 32768
    assert next_aligned(5, 0) == 5
    assert next_aligned(5, 1) == 5


def test_header_and_descriptor_raw_round_trip(tmp_path: Path) -> None:
    create(tmp_path / "a.sif", [NewObject(DataType.GENERIC, data=b"x", name="n")])
    data = (tmp_path / "a.sif").read_bytes()
    with SifImage.open(tmp_path / "a.sif") as image:
        assert image.header.raw() == data[:128]
        d = image.get(1)
        assert d.raw() == data[4096:4096 + 585] == d.pack()
    assert Header.parse(data[:128]) == image.header
    assert Descriptor.parse(data[4096:4681]) == d


def test_objects_from_a_pipe(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    payload = b"streamed" * 100_000

    def feed() -> None:
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        create(tmp_path / "a.sif", [NewObject(DataType.GENERIC, path=f"/proc/self/fd/{read_end}")])
    finally:
        writer.join()
        os.close(read_end)
    with SifImage.open(tmp_path / "a.sif") as image:
        assert image.read(image.get(1)) == payload


def test_data_and_path_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f")
    with pytest.raises(UsageError):
        create(tmp_path / "a.sif",
               [NewObject(DataType.GENERIC, data=b"d", path=str(tmp_path / "f"))])


def test_reading_an_image_imports_no_writer_uuid_or_hashing(tmp_path: Path) -> None:
    """The exec path opens images: keep what that pulls in small."""
    import subprocess
    import sys

    create(tmp_path / "a.sif", [NewObject(DataType.PARTITION, data=b"p", fs_type=FSType.SQUASHFS,
                                          part_type=PartType.PRIMSYS, arch="amd64")])
    code = (
        "import sys\n"
        "from capsa.sif.image import SifImage\n"
        f"with SifImage.open({str(tmp_path / 'a.sif')!r}) as image:\n"
        "    image.primary_partition().partition_info()\n"
        "heavy = {'uuid', 'platform', 'hashlib', 'tempfile', 'json', 'capsa.sif.writer',"
        " 'capsa.sif.show'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.stdout == "[]\n", done.stdout
