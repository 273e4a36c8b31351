"""Fixtures for the signing tests: reference keys and images, fresh images, keys."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from capsa.integrity.keyring import Keyring
from capsa.integrity.pgpkeys import PgpKey, split_keys
from capsa.sif import DataType, FSType, NewObject, PartType, create
from support.env import INTEROP
from support.strict import expected

REFERENCE_IMAGES = INTEROP / "images"
REFERENCE_KEYS = INTEROP / "keys"
OTHER_PASSPHRASE = "correct horse"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def gpg_available() -> None:
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.skip("GnuPG (gpg, gpgv) is not installed")


@pytest.fixture(scope="session")
def ref_secret(gpg_available: None) -> PgpKey:
    """The reference OpenPGP secret key (no passphrase)."""
    if not REFERENCE_KEYS.is_dir():
        pytest.skip(expected(f"{INTEROP} is absent"))
    return split_keys((REFERENCE_KEYS / "private.asc").read_bytes())[0]


@pytest.fixture(scope="session")
def other_secret(gpg_available: None) -> PgpKey:
    """A second key pair, protected by OTHER_PASSPHRASE (generated once)."""
    from capsa.integrity.pgp import GnuPG

    _, secret = GnuPG().generate("Other Signer", "tests", "other@example.com",
                                 OTHER_PASSPHRASE, 2048)
    return split_keys(secret)[0]


@pytest.fixture
def ref_keyring(tmp_path: Path, ref_secret: PgpKey) -> Path:
    """A public keyring file holding the reference key."""
    ring = tmp_path / "pgp-public"
    ring.write_bytes(ref_secret.public_part())
    return ring


def make_image(path: Path, *, size: int = 8192, groups: int = 1) -> Path:
    """A small SIF: per group, a deffile and a partition of *size* bytes."""
    objects = []
    for group in range(1, groups + 1):
        objects.append(NewObject(DataType.DEFFILE, data=b"bootstrap: scratch\n",
                                 group_id=group))
        objects.append(NewObject(
            DataType.PARTITION, data=bytes(range(256)) * (size // 256), group_id=group,
            fs_type=FSType.SQUASHFS,
            part_type=PartType.PRIMSYS if group == 1 else PartType.DATA, arch="amd64"))
    create(path, objects)
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "image.sif")


@pytest.fixture
def keyring_dir(tmp_path: Path, ref_secret: PgpKey) -> Keyring:
    """A user keyring directory holding the reference key pair."""
    keyring = Keyring(tmp_path / "keys")
    keyring.add_secret(ref_secret)
    keyring.add_public(ref_secret)
    return keyring
