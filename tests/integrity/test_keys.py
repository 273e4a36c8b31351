"""Keyring bytes and files: parsing, armor, storing as Apptainer does."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.integrity.conftest import REFERENCE_KEYS

from capsa.errors import AlreadyExistsError, FormatError, NotFoundError
from capsa.integrity.keyring import Keyring, read_keyring
from capsa.integrity.pgpkeys import (
    ARMOR_PUBLIC,
    PgpKey,
    armor,
    dearmor,
    iter_packets,
    split_keys,
    split_user_id,
)

pytestmark = pytest.mark.needs_shared
FINGERPRINT = "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"


def test_reference_key(ref_secret: PgpKey) -> None:
    assert ref_secret.fingerprint_hex == FINGERPRINT
    assert ref_secret.user_ids == ("Unit Test <unit@test.com>",)
    assert (ref_secret.secret, ref_secret.encrypted, ref_secret.bits) == (True, False, 2048)
    public = split_keys(ref_secret.public_part())
    assert [(k.fingerprint_hex, k.secret) for k in public] == [(FINGERPRINT, False)]


def test_protected_key_is_seen_as_such(other_secret: PgpKey) -> None:
    assert other_secret.secret and other_secret.encrypted
    assert other_secret.user_ids == ("Other Signer (tests) <other@example.com>",)


def test_armor_round_trip(ref_secret: PgpKey) -> None:
    text = armor(ref_secret.public_part(), ARMOR_PUBLIC)
    assert dearmor(text) == ref_secret.public_part()
    assert split_keys(text)[0].fingerprint == ref_secret.fingerprint


def test_armor_checksum_is_checked(ref_secret: PgpKey) -> None:
    lines = armor(ref_secret.public_part(), ARMOR_PUBLIC).decode().splitlines()
    lines[3] = lines[3][:-2] + ("AA" if lines[3][-2:] != "AA" else "BB")
    with pytest.raises(FormatError):
        dearmor("\n".join(lines).encode())


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_truncated_keyring_is_refused(data: st.DataObject) -> None:
    raw = split_keys((REFERENCE_KEYS / "private.asc").read_bytes())[0].public_part()
    # Primary key, user ID and its self-signature alone are a complete key
    # (one without its subkey): cutting exactly there is no truncation.
    complete = sum(len(p.raw) for p in iter_packets(raw)[:3])
    cut = data.draw(st.integers(1, len(raw) - 1).filter(lambda n: n != complete))
    with pytest.raises(FormatError):
        split_keys(raw[:cut])


def test_garbage_is_refused() -> None:
    with pytest.raises(FormatError):
        split_keys(b"hello world")


@pytest.mark.parametrize(("uid", "parts"), [
    ("Unit Test <unit@test.com>", ("Unit Test", "", "unit@test.com")),
    ("A B (c d) <e@f>", ("A B", "c d", "e@f")),
    ("Just a name", ("Just a name", "", "")),
])
def test_split_user_id(uid: str, parts: tuple[str, str, str]) -> None:
    assert split_user_id(uid) == parts


def test_keyring_files_are_private(tmp_path: Path, ref_secret: PgpKey) -> None:
    keyring = Keyring(tmp_path / "keys")
    keyring.add_secret(ref_secret)
    keyring.add_public(ref_secret)
    assert stat.S_IMODE(os.stat(keyring.dir).st_mode) == 0o700
    for path in (keyring.public_path, keyring.secret_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [k.secret for k in keyring.public_keys()] == [False]
    assert [k.secret for k in keyring.secret_keys()] == [True]
    with pytest.raises(AlreadyExistsError):
        keyring.add_public(ref_secret)
    keyring.remove_public(FINGERPRINT.lower())
    assert keyring.public_keys() == []
    with pytest.raises(NotFoundError):
        keyring.remove_public(FINGERPRINT)
    assert sorted(os.listdir(keyring.dir)) == ["pgp-public", "pgp-secret"]


def test_truncated_keyring_file(tmp_path: Path, ref_secret: PgpKey) -> None:
    ring = tmp_path / "pgp-public"
    ring.write_bytes(ref_secret.public_part()[:-7])
    with pytest.raises(FormatError, match="corrupt"):
        read_keyring(ring)
