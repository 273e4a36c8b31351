"""Every signed reference image verifies, and fails once any covered byte changes."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integrity.conftest import REFERENCE_IMAGES, REFERENCE_KEYS

from capsa.errors import CapsaError, SignatureError
from capsa.integrity.dsse import load_public_key
from capsa.integrity.verify import KeyMaterial, Keyring, verify_image
from capsa.sif import SifImage

pytestmark = pytest.mark.needs_shared

# image -> (verify options, key kind)
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "one-group-signed-pgp.sif": ({}, "pgp"),
    "one-group-signed-dsse.sif": ({}, "ed25519"),
    "one-group-signed-legacy.sif": ({"legacy": True}, "pgp"),
    "one-group-signed-legacy-all.sif": ({"legacy": True, "all_objects": True}, "pgp"),
    "one-group-signed-legacy-group.sif": ({"legacy": True, "groups": [1]}, "pgp"),
}
# Descriptor bytes the non-legacy digests cover (type, used, link, size, ctime,
# uid, gid, name, extra) plus ID, group and offset, whose change breaks the
# signature in other ways.  SizeWithPadding (33-40) and ModifiedAt (49-56)
# are not covered, in the reference as here.
_DESCRIPTOR_BYTES = [*range(0, 33), *range(41, 49), *range(57, 585)]


def keys_for(kind: str, ring: Path) -> KeyMaterial:
    if kind == "pgp":
        return KeyMaterial(keyrings=(Keyring(str(ring), "LOCAL"),))
    return KeyMaterial(pem_keys=(load_public_key(str(REFERENCE_KEYS / f"{kind}-public.pem")),))


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_image_verifies(name: str, ref_keyring: Path) -> None:
    options, kind = CASES[name]
    results = verify_image(REFERENCE_IMAGES / name, keys_for(kind, ref_keyring), **options)
    assert results and all(r.error is None and r.verified for r in results)
    if kind == "pgp":
        assert {r.signer.name for r in results if r.signer} == {"Unit Test <unit@test.com>"}


def test_dsse_image_verifies_with_its_rsa_key_too(ref_keyring: Path) -> None:
    verify_image(REFERENCE_IMAGES / "one-group-signed-dsse.sif", keys_for("rsa", ref_keyring))


def test_dsse_image_fails_with_another_key(ref_keyring: Path) -> None:
    with pytest.raises(SignatureError, match="dsse: verify envelope failed"):
        verify_image(REFERENCE_IMAGES / "one-group-signed-dsse.sif",
                     keys_for("ecdsa", ref_keyring))


def test_unsigned_reference_image_fails(ref_keyring: Path) -> None:
    with pytest.raises(SignatureError, match="signature not found for object group 1"):
        verify_image(REFERENCE_IMAGES / "one-group.sif", keys_for("pgp", ref_keyring))


def test_legacy_signature_is_ignored_without_legacy(ref_keyring: Path) -> None:
    with pytest.raises(SignatureError, match="signature not found"):
        verify_image(REFERENCE_IMAGES / "one-group-signed-legacy.sif",
                     keys_for("pgp", ref_keyring))


def test_pgp_image_fails_with_an_empty_keyring(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(SignatureError, match="unknown entity"):
        verify_image(REFERENCE_IMAGES / "one-group-signed-pgp.sif", keys_for("pgp", empty))


def covered_positions(name: str) -> list[int]:
    """File offsets whose every byte the signatures of *name* protect."""
    options, _ = CASES[name]
    with SifImage.open(REFERENCE_IMAGES / name) as image:
        sigs = [d for d in image.descriptors if d.data_type.name == "SIGNATURE"]
        linked = {s.linked_id for s in sigs if not s.linked_is_group}
        groups = {s.linked_id for s in sigs if s.linked_is_group}
        signed = [d for d in image.descriptors if d.data_type.name != "SIGNATURE"
                  and (d.id in linked or d.group_id in groups)]
        if options.get("legacy") and not options.get("all_objects") and not groups:
            signed = [image.primary_partition()]
        offset = image.header.descriptors_offset
        positions = [p for d in signed for p in range(d.offset, d.offset + d.size)]
        if not options.get("legacy"):
            positions += [*range(0, 45), *range(48, 64)]
            for d in signed:
                base = offset + d.index * 585
                positions += [base + i for i in _DESCRIPTOR_BYTES]
    return sorted(set(positions))


def assert_flip_fails(name: str, position: int, mask: int, ring: Path, work: Path) -> None:
    options, kind = CASES[name]
    data = bytearray((REFERENCE_IMAGES / name).read_bytes())
    data[position] ^= mask
    target = work / name
    target.write_bytes(bytes(data))
    with pytest.raises(CapsaError):
        verify_image(target, keys_for(kind, ring), **options)


def _sample(name: str) -> list[int]:
    positions = covered_positions(name)
    step = max(1, len(positions) // 24)
    return positions[::step] + positions[-3:]


@pytest.mark.parametrize(
    ("name", "position"),
    [(name, p) for name in sorted(CASES) for p in _sample(name)]
    if REFERENCE_IMAGES.is_dir() else [],
)
def test_flipping_a_covered_byte_fails(name: str, position: int, ref_keyring: Path,
                                        tmp_path: Path) -> None:
    assert_flip_fails(name, position, 0x01, ref_keyring, tmp_path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_flipping_any_covered_byte_fails(name: str, ref_keyring: Path, tmp_path: Path) -> None:
    positions = covered_positions(name)

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(positions), st.integers(1, 255))
    def check(position: int, mask: int) -> None:
        assert_flip_fails(name, position, mask, ref_keyring, tmp_path)

    check()


def test_uncovered_descriptor_fields_match_the_reference(ref_keyring: Path,
                                                          tmp_path: Path) -> None:
    """ModifiedAt is outside the signed digests in the reference too."""
    name = "one-group-signed-pgp.sif"
    data = bytearray((REFERENCE_IMAGES / name).read_bytes())
    with SifImage.open(REFERENCE_IMAGES / name) as image:
        base = image.header.descriptors_offset + image.get(1).index * 585
    struct.pack_into("<q", data, base + 49, 12345)
    (tmp_path / name).write_bytes(bytes(data))
    verify_image(tmp_path / name, keys_for("pgp", ref_keyring))
