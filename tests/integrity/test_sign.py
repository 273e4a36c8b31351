"""Signing with capsa, verifying with capsa, as the reference behaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integrity.conftest import (
    OTHER_PASSPHRASE,
    REFERENCE_KEYS,
    make_image,
    sha256_file,
)

from capsa.errors import NotFoundError, SignatureError, UsageError
from capsa.integrity.dsse import load_private_key, load_public_key
from capsa.integrity.pgpkeys import PgpKey
from capsa.integrity.sign import DsseSigner, PgpSigner, sign_image
from capsa.integrity.verify import KeyMaterial, Keyring, verify_image
from capsa.sif import DataType, HashType, NewObject, SifImage, add_objects, create

pytestmark = pytest.mark.needs_shared


def pgp_keys(ring: Path) -> KeyMaterial:
    return KeyMaterial(keyrings=(Keyring(str(ring), "LOCAL"),))


def pem(kind: str) -> KeyMaterial:
    return KeyMaterial(pem_keys=(load_public_key(str(REFERENCE_KEYS / f"{kind}-public.pem")),))


def dsse_signer(kind: str) -> DsseSigner:
    return DsseSigner(load_private_key(str(REFERENCE_KEYS / f"{kind}-private.pem")))


def test_pgp_signature_descriptor(image: Path, ref_secret: PgpKey, ref_keyring: Path) -> None:
    [new] = sign_image(image, PgpSigner(ref_secret, None))
    with SifImage.open(image) as sif:
        sig = sif.get(new)
        assert (sig.group_id, sig.linked_id, sig.linked_is_group) == (0, 1, True)
        assert sig.signature_info() == (HashType.SHA256, ref_secret.fingerprint)
        assert sif.read(sig).startswith(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256")
    [result] = verify_image(image, pgp_keys(ref_keyring))
    assert [d.id for d in result.verified] == [1, 2]
    assert result.signer is not None and result.signer.fingerprint == ref_secret.fingerprint


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519", "rsa"])
def test_dsse_signature_verifies(image: Path, kind: str) -> None:
    [new] = sign_image(image, dsse_signer(kind))
    with SifImage.open(image) as sif:
        assert sif.get(new).signature_info() == (HashType.SHA256, bytes(20))
    [result] = verify_image(image, pem(kind))
    assert [d.id for d in result.verified] == [1, 2]


def test_one_signature_per_group(tmp_path: Path, ref_secret: PgpKey, ref_keyring: Path) -> None:
    path = make_image(tmp_path / "two.sif", groups=2)
    assert sign_image(path, PgpSigner(ref_secret, None)) == [5, 6]
    results = verify_image(path, pgp_keys(ref_keyring))
    assert [[d.id for d in r.verified] for r in results] == [[1, 2], [3, 4]]


def test_group_and_object_selection(tmp_path: Path, ref_secret: PgpKey,
                                    ref_keyring: Path) -> None:
    path = make_image(tmp_path / "two.sif", groups=2)
    sign_image(path, PgpSigner(ref_secret, None), groups=[2])
    verify_image(path, pgp_keys(ref_keyring), groups=[2])
    with pytest.raises(SignatureError, match="signature not found for object group 1"):
        verify_image(path, pgp_keys(ref_keyring))
    sign_image(path, PgpSigner(ref_secret, None), objects=[2])
    verify_image(path, pgp_keys(ref_keyring), objects=[2])
    with pytest.raises(SignatureError, match="object 1: object not signed"):
        verify_image(path, pgp_keys(ref_keyring), groups=[1])


def test_another_key_fails(image: Path, other_secret: PgpKey, ref_keyring: Path) -> None:
    sign_image(image, PgpSigner(other_secret, OTHER_PASSPHRASE))
    with pytest.raises(SignatureError, match="made by unknown entity"):
        verify_image(image, pgp_keys(ref_keyring))


def test_dsse_with_another_key_fails(image: Path) -> None:
    sign_image(image, dsse_signer("ed25519"))
    with pytest.raises(SignatureError, match="no valid signature"):
        verify_image(image, pem("rsa"))


def test_signing_twice_gives_two_valid_signatures(image: Path, ref_secret: PgpKey,
                                                  ref_keyring: Path) -> None:
    sign_image(image, PgpSigner(ref_secret, None))
    sign_image(image, PgpSigner(ref_secret, None))
    results = verify_image(image, pgp_keys(ref_keyring))
    assert [r.signature.id for r in results] == [3, 4]
    assert all([d.id for d in r.verified] == [1, 2] for r in results)


def test_adding_an_object_after_signing_breaks_the_group(image: Path, ref_secret: PgpKey,
                                                         ref_keyring: Path) -> None:
    sign_image(image, PgpSigner(ref_secret, None))
    add_objects(image, [NewObject(DataType.GENERIC, data=b"late", group_id=1)])
    with pytest.raises(SignatureError, match="object 4: object not signed"):
        verify_image(image, pgp_keys(ref_keyring))
    # The old signature still covers objects 1 and 2 alone, and still checks out:
    verify_image(image, pgp_keys(ref_keyring), objects=[2])
    # Signing again adds a good signature, but the old one keeps failing.
    sign_image(image, PgpSigner(ref_secret, None))
    with pytest.raises(SignatureError, match="object 4: object not signed"):
        verify_image(image, pgp_keys(ref_keyring))


def test_adding_an_object_in_no_group_is_refused(image: Path, ref_secret: PgpKey,
                                                 ref_keyring: Path) -> None:
    sign_image(image, PgpSigner(ref_secret, None))
    add_objects(image, [NewObject(DataType.GENERIC, data=b"x", group_id=0)])
    with pytest.raises(SignatureError, match="non-signature object not associated"):
        verify_image(image, pgp_keys(ref_keyring))


def test_wrong_passphrase_changes_nothing(image: Path, other_secret: PgpKey) -> None:
    before = sha256_file(image)
    with pytest.raises(SignatureError, match="passphrase"):
        sign_image(image, PgpSigner(other_secret, "wrong"))
    assert sha256_file(image) == before


def test_missing_object_or_group_changes_nothing(image: Path, ref_secret: PgpKey) -> None:
    before = sha256_file(image)
    with pytest.raises(NotFoundError, match="object not found"):
        sign_image(image, PgpSigner(ref_secret, None), objects=[9])
    with pytest.raises(NotFoundError, match="group not found"):
        sign_image(image, PgpSigner(ref_secret, None), groups=[7])
    assert sha256_file(image) == before


def test_image_without_groups(tmp_path: Path, ref_secret: PgpKey) -> None:
    path = tmp_path / "nogroup.sif"
    create(path, [NewObject(DataType.GENERIC, data=b"x", group_id=0)])
    with pytest.raises(NotFoundError, match="no groups found"):
        sign_image(path, PgpSigner(ref_secret, None))


def test_corrupt_signature_object(image: Path, ref_keyring: Path) -> None:
    add_objects(image, [NewObject(DataType.SIGNATURE, data=b"garbage", group_id=0,
                                  linked_id=1, linked_is_group=True,
                                  hash_type=HashType.SHA256)])
    with pytest.raises(SignatureError, match="signature format not recognized"):
        verify_image(image, pgp_keys(ref_keyring))


def test_tampered_clearsigned_text(image: Path, ref_secret: PgpKey, ref_keyring: Path) -> None:
    [new] = sign_image(image, PgpSigner(ref_secret, None))
    with SifImage.open(image) as sif:
        d = sif.get(new)
        data = bytearray(sif.read(d))
    at = data.index(b'"relativeId":0') + len(b'"relativeId":')
    data[at] = ord("1")
    with open(image, "r+b") as f:
        f.seek(d.offset)
        f.write(bytes(data))
    with pytest.raises(SignatureError, match=f"signature object {new} not valid"):
        verify_image(image, pgp_keys(ref_keyring))


def test_signature_linked_to_a_missing_group(image: Path, ref_secret: PgpKey,
                                              ref_keyring: Path) -> None:
    [new] = sign_image(image, PgpSigner(ref_secret, None))
    with SifImage.open(image) as sif:
        d = sif.get(new)
        base = sif.header.descriptors_offset + d.index * 585
    with open(image, "r+b") as f:
        f.seek(base + 13)
        f.write((0xF0000000 | 5).to_bytes(4, "little"))
    before = sha256_file(image)
    with pytest.raises(SignatureError, match="signature not found for object group 1"):
        verify_image(image, pgp_keys(ref_keyring))
    with pytest.raises(NotFoundError, match="group not found"):
        verify_image(image, pgp_keys(ref_keyring), groups=[5])
    assert sha256_file(image) == before


def test_fingerprint_must_match_the_signer(image: Path, ref_secret: PgpKey,
                                           ref_keyring: Path) -> None:
    [new] = sign_image(image, PgpSigner(ref_secret, None))
    with SifImage.open(image) as sif:
        base = sif.header.descriptors_offset + sif.get(new).index * 585
    with open(image, "r+b") as f:
        f.seek(base + 201 + 4)
        f.write(bytes(20 * [0x42]))
    with pytest.raises(SignatureError, match="fingerprint in descriptor does not correspond"):
        verify_image(image, pgp_keys(ref_keyring))


def test_pem_that_is_not_a_key(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    with pytest.raises(SignatureError, match="not a PEM"):
        load_public_key(str(bogus))
    with pytest.raises(SignatureError, match="not a PEM"):
        load_private_key(str(bogus))


def test_bad_selection(image: Path, ref_keyring: Path) -> None:
    with pytest.raises(UsageError):
        verify_image(image, pgp_keys(ref_keyring), groups=[0])
    with pytest.raises(NotFoundError, match="object not found"):
        verify_image(image, pgp_keys(ref_keyring), objects=[42])
