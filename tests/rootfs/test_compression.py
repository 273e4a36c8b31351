"""capsa.rootfs.compression: gzip through ISA-L or zlib, same bytes, same errors."""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from pathlib import Path

import pytest

from capsa.errors import FormatError
from capsa.rootfs.compression import decompressed, gunzipped
from capsa.rootfs.layers import LayerFile, merge_layers
from support.ocibuild import Member, sha256, tar_bytes

PAYLOAD = os.urandom(3000) + b"squash " * 200_000


@pytest.fixture(params=["isal", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test with ISA-L, then with the zlib fallback (isal hidden)."""
    if request.param == "isal":
        pytest.importorskip("isal", reason="the isal package is not installed")
    else:
        monkeypatch.setitem(sys.modules, "isal", None)  # import isal -> ImportError
    return str(request.param)


def _read_all(data: bytes) -> bytes:
    stream = gunzipped(io.BytesIO(data))
    parts = []
    while chunk := stream.read(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def _corrupt(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[30:40] = b"\xff" * 10  # inside the first deflate block
    return bytes(broken)


def test_same_bytes_as_gzip(inflater: str) -> None:
    assert _read_all(gzip.compress(PAYLOAD)) == PAYLOAD


def test_members_are_concatenated(inflater: str) -> None:
    data = gzip.compress(b"first ") + gzip.compress(b"second")
    assert _read_all(data) == b"first second"


def test_cut_stream_is_eof_error(inflater: str) -> None:
    with pytest.raises(EOFError):
        _read_all(gzip.compress(PAYLOAD)[:5000])


def test_corrupt_block_is_zlib_error(inflater: str) -> None:
    with pytest.raises(zlib.error):
        _read_all(_corrupt(gzip.compress(PAYLOAD)))


def test_corrupt_layer_is_a_format_error(inflater: str, tmp_path: Path) -> None:
    blob = _corrupt(gzip.compress(tar_bytes([Member("f", data=PAYLOAD)])))
    path = tmp_path / "blob"
    path.write_bytes(blob)
    with pytest.raises(FormatError, match=r"^layer sha256:"):
        merge_layers(io.BytesIO(), [LayerFile(path, sha256(blob), len(blob))])


def test_the_fallback_really_is_zlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)
    assert isinstance(gunzipped(io.BytesIO(gzip.compress(b"x"))), gzip.GzipFile)


class _OnlyRead:
    """A source with read() and nothing else, as a verifying reader is."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)


def test_sources_need_only_read(inflater: str) -> None:
    stream = decompressed(_OnlyRead(gzip.compress(PAYLOAD)))  # type: ignore[arg-type]
    assert stream.read() == PAYLOAD
