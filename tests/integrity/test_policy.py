"""The site policy: configuration and enforce_signed."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integrity.conftest import OTHER_PASSPHRASE, REFERENCE_KEYS

from capsa.errors import FormatError, NotFoundError, SignatureError
from capsa.integrity.dsse import load_private_key
from capsa.integrity.pgpkeys import PgpKey
from capsa.integrity.policy import enforce_signed, load_policy, read_config
from capsa.integrity.sign import DsseSigner, PgpSigner, sign_image

pytestmark = pytest.mark.needs_shared


def test_config_parsing(tmp_path: Path) -> None:
    conf = tmp_path / "capsa.conf"
    conf.write_text("# comment\n\nRequire  Signed Images = yes   # trailing\n"
                    "signature keyring = /k/ring\nother = x\n")
    assert read_config(conf)["require signed images"] == "yes"
    policy = load_policy(conf)
    assert policy.required and policy.keyring == "/k/ring"


def test_default_policy_requires_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "capsa.conf"
    conf.write_text("")
    assert not load_policy(conf).required


@pytest.mark.parametrize("text", ["require signed images = maybe\n", "no equals sign\n"])
def test_bad_config(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "capsa.conf"
    conf.write_text(text)
    with pytest.raises(FormatError):
        load_policy(conf)


def test_missing_explicit_config(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_config(tmp_path / "absent.conf")


def test_enforce_signed(image: Path, ref_secret: PgpKey, ref_keyring: Path,
                        other_secret: PgpKey) -> None:
    with pytest.raises(SignatureError, match="not signed by a key in"):
        enforce_signed(image, keyring_path=str(ref_keyring))
    sign_image(image, PgpSigner(ref_secret, None))
    enforce_signed(image, keyring_path=str(ref_keyring))
    sign_image(image, PgpSigner(other_secret, OTHER_PASSPHRASE))
    with pytest.raises(SignatureError, match="unknown entity"):
        enforce_signed(image, keyring_path=str(ref_keyring))


def test_enforce_signed_with_a_pem_key(image: Path) -> None:
    key = load_private_key(str(REFERENCE_KEYS / "ed25519-private.pem"))
    sign_image(image, DsseSigner(key))
    enforce_signed(image, keyring_path=str(REFERENCE_KEYS / "ed25519-public.pem"))
    with pytest.raises(SignatureError):
        enforce_signed(image, keyring_path=str(REFERENCE_KEYS / "rsa-public.pem"))


def test_enforce_signed_refuses_altered_and_non_sif(image: Path, ref_secret: PgpKey,
                                                   ref_keyring: Path, tmp_path: Path) -> None:
    sign_image(image, PgpSigner(ref_secret, None))
    data = bytearray(image.read_bytes())
    data[-5000] ^= 1  # inside the partition
    altered = tmp_path / "altered.sif"
    altered.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="integrity compromised"):
        enforce_signed(altered, keyring_path=str(ref_keyring))
    other = tmp_path / "plain.img"
    other.write_bytes(b"\0" * 4096)
    with pytest.raises(SignatureError):
        enforce_signed(other, keyring_path=str(ref_keyring))
    with pytest.raises(SignatureError, match="not found"):
        enforce_signed(image, keyring_path=str(tmp_path / "nope"))
