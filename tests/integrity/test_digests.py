"""The metadata a signature covers, against what the reference signed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsa.errors import SignatureError
from capsa.integrity import digests
from capsa.integrity.pgp import clearsigned_text
from capsa.integrity.sign import group_objects
from capsa.sif import SifImage

pytestmark = pytest.mark.needs_shared


def _signed_payload(path: Path) -> bytes:
    with SifImage.open(path) as image:
        sig = next(d for d in image.descriptors if d.data_type.name == "SIGNATURE")
        data = image.read(sig)
    if data.startswith(b"-----BEGIN PGP"):
        return clearsigned_text(data)
    import base64

    return base64.b64decode(json.loads(data)["payload"])


@pytest.mark.parametrize("name", ["one-group-signed-pgp.sif", "one-group-signed-dsse.sif"])
def test_metadata_is_byte_for_byte_the_reference(interop: Path, name: str) -> None:
    path = interop / "images" / name
    with SifImage.open(path) as image:
        objects = group_objects(image, 1)
        computed = digests.image_metadata(image, min(d.id for d in objects), objects)
    assert computed.to_json() == _signed_payload(path)


def test_parse_round_trip(interop: Path) -> None:
    payload = _signed_payload(interop / "images" / "one-group-signed-pgp.sif")
    assert digests.parse_metadata(payload).to_json() == payload


def test_header_digest_ignores_arch_and_times(interop: Path, tmp_path: Path) -> None:
    path = tmp_path / "x.sif"
    data = bytearray((interop / "images" / "one-group.sif").read_bytes())
    with SifImage.open(interop / "images" / "one-group.sif") as image:
        before = digests.header_integrity_bytes(image)
    data[45] ^= 0xFF  # arch
    data[64] ^= 0x01  # created at
    path.write_bytes(bytes(data))
    with SifImage.open(path) as image:
        assert digests.header_integrity_bytes(image) == before
    assert len(before) == 45 + 16


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", b'{"version":2,"header":{"digest":"sha256:00"},"objects":[]}',
    b'{"version":1,"header":{"digest":"md5:' + b"00" * 16 + b'"},"objects":[]}',
    b'{"version":1,"header":{"digest":"sha256:abc"},"objects":[]}',
    b'{"version":1,"header":{"digest":"sha256:' + b"00" * 32 + b'"},"objects":[{"relativeId":-1}]}',
])
def test_malformed_metadata_is_refused(bad: bytes) -> None:
    with pytest.raises(SignatureError):
        digests.parse_metadata(bad)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200_000), st.integers(0, 5000))
def test_hash_range_matches_hashlib(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                    offset: int) -> None:
    path = tmp_path_factory.mktemp("h") / "f"
    path.write_bytes(b"\0" * offset + data)
    with open(path, "rb") as f:
        got = digests.hash_range(f.fileno(), offset, len(data), "sha256")
    assert got.value == hashlib.sha256(data).digest()
