"""The site policy: configuration and enforce_signed."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integrity.conftest import OTHER_PASSPHRASE, REFERENCE_KEYS

from capsa.errors import EnvironmentFailure, FormatError, NotFoundError, SignatureError
from capsa.integrity.dsse import load_private_key
from capsa.integrity.pgpkeys import PgpKey
from capsa.integrity.policy import enforce_signed, load_policy
from capsa.integrity.sign import DsseSigner, PgpSigner, sign_image
from capsa.site import SiteSettings, read_config

pytestmark = pytest.mark.needs_shared


def _site(tmp_path: Path, text: str | None) -> SiteSettings:
    """A site whose configuration directory holds capsa.conf with *text*."""
    site_dir = tmp_path / "site"
    site_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    if text is not None:
        (site_dir / "capsa.conf").write_text(text)
        (site_dir / "capsa.conf").chmod(0o644)
    return SiteSettings(config_dir=str(site_dir))


def test_config_parsing(tmp_path: Path) -> None:
    site = _site(tmp_path, "# comment\n\nRequire  Signed Images = yes   # trailing\n"
                           "signature keyring = /k/ring\nother = x\n")
    assert read_config(site.path("capsa.conf"))["require signed images"] == "yes"
    policy = load_policy(site)
    assert policy.required and policy.keyrings == ("/k/ring",)


def test_default_keyring_is_the_sites(tmp_path: Path) -> None:
    site = _site(tmp_path, "require signed images = yes\n")
    assert load_policy(site).keyrings == (site.path("global-pgp-public"),)


def test_default_policy_requires_nothing(tmp_path: Path) -> None:
    assert not load_policy(_site(tmp_path, "")).required
    assert not load_policy(_site(tmp_path, None)).required


@pytest.mark.parametrize("text", ["require signed images = maybe\n", "no equals sign\n"])
def test_bad_config(tmp_path: Path, text: str) -> None:
    with pytest.raises(FormatError):
        load_policy(_site(tmp_path, text))


def test_missing_explicit_config(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_config(tmp_path / "absent.conf")
    with pytest.raises(NotFoundError):
        load_policy(_site(tmp_path, None), user_config=tmp_path / "absent.conf")


def test_the_user_only_adds_requirements(tmp_path: Path) -> None:
    site = _site(tmp_path, "require signed images = yes\nsignature keyring = /site/ring\n")
    relaxed = tmp_path / "relaxed.conf"
    relaxed.write_text("require signed images = no\n")
    assert load_policy(site, user_config=relaxed).keyrings == ("/site/ring",)
    stricter = tmp_path / "stricter.conf"
    stricter.write_text("require signed images = yes\nsignature keyring = /mine\n")
    assert load_policy(site, user_config=stricter, keyrings=["/flag"]).keyrings == (
        "/site/ring", "/mine", "/flag")
    assert load_policy(_site(tmp_path / "none", None), keyrings=["/flag"]).keyrings == (
        "/flag",)


def test_a_site_file_others_could_write_is_refused(tmp_path: Path) -> None:
    site = _site(tmp_path, "require signed images = no\n")
    Path(site.path("capsa.conf")).chmod(0o666)
    with pytest.raises(EnvironmentFailure, match="writable by other users"):
        load_policy(site)


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
