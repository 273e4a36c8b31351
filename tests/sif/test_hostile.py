"""Hostile files: every malformed image is one clear error, never a crash.

The CLI cases check the user's view (one FATAL line, exit 255, no traceback,
nothing written); the property-based ones feed mutated and random images to
the library, which may raise only SifFormatError or NotFoundError.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capsa.errors import NotFoundError, SifFormatError
from capsa.sif import (
    DataType,
    FSType,
    HashType,
    NewObject,
    PartType,
    SifImage,
    add_objects,
    create,
    delete_object,
    set_primary,
)
from capsa.sif.show import header_text, info_text, list_text
from support.cli import Capsa

DESCRIPTORS = 4096
SLOT = 585


def sample_image(path: Path) -> bytes:
    create(path, [
        NewObject(DataType.DEFFILE, data=b"Bootstrap: scratch\n"),
        NewObject(DataType.PARTITION, data=b"p" * 300, fs_type=FSType.SQUASHFS,
                  part_type=PartType.PRIMSYS, arch="amd64"),
        NewObject(DataType.PARTITION, data=b"q" * 10, fs_type=FSType.EXT3,
                  part_type=PartType.SYSTEM, arch="386", group_id=2),
        NewObject(DataType.SIGNATURE, data=b"s" * 20, group_id=0, linked_id=1,
                  linked_is_group=True, hash_type=HashType.SHA256, fingerprint=b"f" * 20),
        NewObject(DataType.SBOM, data=b"{}", sbom_format="spdx-json", name="sbom.json"),
    ], descriptors=8)
    return path.read_bytes()


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def slot(i: int, field: int) -> int:
    return DESCRIPTORS + i * SLOT + field


# name -> how to spoil a good image
SPOILERS: dict[str, Callable[[bytes], bytes]] = {
    "bad magic": lambda d: d[:32] + b"NOT_MAGIC\0" + d[42:],
    "bad version": lambda d: d[:42] + b"99\0" + d[45:],
    "truncated header": lambda d: d[:100],
    "truncated table": lambda d: d[:5000],
    "truncated data": lambda d: d[:-5],
    "empty file": lambda d: b"",
    "absurd descriptor count": lambda d: patch(d, 88, "<q", 1 << 40),
    "negative descriptor count": lambda d: patch(d, 88, "<q", -1),
    "absurd free count": lambda d: patch(d, 80, "<q", 1000),
    "table past the end": lambda d: patch(d, 96, "<q", 1 << 50),
    "table over the header": lambda d: patch(d, 96, "<q", 0),
    "object past the end": lambda d: patch(d, slot(1, 17), "<q", 1 << 40),
    "object size past the end": lambda d: patch(d, slot(1, 25), "<q", 1 << 62),
    "negative object offset": lambda d: patch(d, slot(1, 17), "<q", -4096),
    "overlapping objects": lambda d: patch(d, slot(2, 17), "<q",
                                           struct.unpack_from("<q", d, slot(1, 17))[0] + 8),
    "object over the table": lambda d: patch(d, slot(0, 17), "<q", 4100),
    "duplicate IDs": lambda d: patch(d, slot(1, 5), "<I", 1),
    "zero ID": lambda d: patch(d, slot(0, 5), "<I", 0),
    "used count mismatch": lambda d: patch(d, slot(6, 4), "<B", 1),
}


@pytest.fixture(scope="module")
def good_image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return sample_image(tmp_path_factory.mktemp("sif") / "good.sif")


@pytest.mark.parametrize("name", sorted(SPOILERS))
def test_spoiled_images_are_format_errors(name: str, good_image: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.sif"
    path.write_bytes(SPOILERS[name](good_image))
    with pytest.raises(SifFormatError):
        SifImage.open(path).close()
    with pytest.raises(SifFormatError):
        add_objects(path, [NewObject(DataType.GENERIC, data=b"x")])
    assert path.read_bytes() == SPOILERS[name](good_image)


@pytest.mark.parametrize("name", ["bad magic", "truncated table", "object past the end",
                                  "overlapping objects", "absurd descriptor count"])
@pytest.mark.parametrize("command", [["list"], ["header"], ["info", "1"], ["dump", "1"],
                                     ["del", "1"], ["setprim", "3"], ["add", "OBJ"]])
def test_cli_says_fatal_once(capsa: Capsa, good_image: bytes, tmp_path: Path, name: str,
                             command: list[str]) -> None:
    path = tmp_path / "bad.sif"
    spoiled = SPOILERS[name](good_image)
    path.write_bytes(spoiled)
    (tmp_path / "obj").write_bytes(b"x")
    if command[0] == "add":
        argv = ["add", str(path), str(tmp_path / "obj"), "--datatype", "7"]
    else:
        argv = [*command, str(path)]
    result = capsa("sif", *argv)
    assert result.returncode == 255, result
    assert result.stderr.startswith("FATAL:   ") and result.stderr.count("\n") == 1, result
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert path.read_bytes() == spoiled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.sif", "obj"]


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing", "device"])
def test_not_a_file(capsa: Capsa, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "image.sif"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target = Path("/dev/null")
    for command in (["list", str(target)], ["del", "1", str(target)]):
        result = capsa("sif", *command, timeout=30)  # a FIFO must not block
        assert result.returncode == 255, result
        assert result.stderr.startswith("FATAL:   ") and result.stderr.count("\n") == 1
    expected = NotFoundError if kind == "missing" else SifFormatError
    with pytest.raises(expected):
        SifImage.open(target)
    with pytest.raises(expected):
        SifImage.open(target, writable=True)


def exercise(path: Path) -> None:
    """Everything a reader does with an image; then try the edits on it."""
    with SifImage.open(path) as image:
        header_text(image.header)
        list_text(image.descriptors)
        for d in image.descriptors:
            with contextlib.suppress(SifFormatError):  # unknown hash, as the reference
                info_text(d)
            assert len(image.read(d)) == d.size
        ids = [d.id for d in image.descriptors]
    add_objects(path, [NewObject(DataType.GENERIC, data=b"new")])
    for object_id in ids[:2]:
        try:
            set_primary(path, object_id)
        except (SifFormatError, NotFoundError):
            raise
        except Exception as err:  # UsageError: not a system partition; fine here
            assert type(err).__name__ == "UsageError", err
    if ids:
        delete_object(path, ids[-1], zero=True)
    with SifImage.open(path) as image:
        ids = [d.id for d in image.descriptors]
    for object_id in ids[:2]:
        try:
            delete_object(path, object_id, compact=True)
        except (SifFormatError, NotFoundError):
            raise
        except Exception as err:  # UsageError: only the last object can be compacted
            assert "compact" in str(err), err
    SifImage.open(path).close()


def check_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "fuzz.sif"
        path.write_bytes(data)
        try:
            exercise(path)
        except (SifFormatError, NotFoundError):
            pass
        except Exception as err:
            if type(err).__name__ == "UsageError" and "capacity" in str(err):
                return  # a full table: a fair refusal
            raise


FIELDS = ["<q", "<i", "<I", "<B"]
INTERESTING = st.one_of(
    st.sampled_from([0, 1, -1, 2, 48, 128, 585, 4096, 32176, 0x4004, 0xF0000001,
                     1 << 31, (1 << 63) - 1, -(1 << 63)]),
    st.integers(-(1 << 63), (1 << 63) - 1),
)


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[int, str, int]]:
    regions = st.one_of(st.integers(0, 120), st.integers(DESCRIPTORS, DESCRIPTORS + 6 * SLOT),
                        st.integers(0, size - 8))
    return draw(st.lists(st.tuples(regions, st.sampled_from(FIELDS), INTERESTING),
                         min_size=1, max_size=6))


def apply(data: bytes, changes: list[tuple[int, str, int]]) -> bytes:
    out = bytearray(data)
    for offset, fmt, value in changes:
        width = struct.calcsize(fmt)
        value &= (1 << (8 * width)) - 1
        out[offset:offset + width] = value.to_bytes(width, "little")
    return bytes(out)


def _good_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        return sample_image(Path(scratch) / "good.sif")


GOOD = _good_bytes()
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(mutations(len(GOOD)))
def test_mutated_images_give_only_clear_errors(changes: list[tuple[int, str, int]]) -> None:
    check_bytes(apply(GOOD, changes))


@FUZZ
@given(st.integers(0, len(GOOD)), st.binary(max_size=64), st.integers(0, len(GOOD)))
def test_spliced_and_cut_images_give_only_clear_errors(at: int, junk: bytes, cut: int) -> None:
    check_bytes((GOOD[:at] + junk + GOOD[at + len(junk):])[:max(cut, 128)])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_give_only_clear_errors(junk: bytes) -> None:
    header = GOOD[:128] if junk[:1] == b"\x00" else b""
    check_bytes(header + junk)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`capsa ARGV` in this process: the exit status and stderr."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from capsa.cli.main import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


CLI_COMMANDS = [["list"], ["header"], ["info", "1"], ["info", "4"], ["dump", "2"],
                ["setprim", "3"], ["del", "5"], ["add"]]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations(len(GOOD)))
def test_the_cli_fails_cleanly_on_mutated_images(changes: list[tuple[int, str, int]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "fuzz.sif"
        source = Path(scratch) / "object"
        source.write_bytes(b"object")
        path.write_bytes(apply(GOOD, changes))
        for command in CLI_COMMANDS:
            if command == ["add"]:
                argv = ["sif", "add", str(path), str(source), "--datatype", "7"]
            else:
                argv = ["sif", *command, str(path)]
            code, err = run_cli(argv)
            assert code in (0, 255), (argv, code, err)
            if code:
                assert err.startswith("FATAL:   ") and err.count("\n") == 1, (argv, err)
                assert "internal error" not in err, (argv, err)
            else:
                assert err == "", (argv, err)
