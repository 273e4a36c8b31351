"""``capsa key``, ``sign`` and ``verify`` as users run them (root and unprivileged)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from tests.integrity.conftest import (
    REFERENCE_IMAGES,
    REFERENCE_KEYS,
    make_image,
    sha256_file,
)

from support.cli import Capsa

pytestmark = [pytest.mark.needs_shared, pytest.mark.usefixtures("gpg_available")]
FINGERPRINT = "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"


def shared_copy(src: Path, dest: Path) -> Path:
    shutil.copyfile(src, dest)
    os.chmod(dest, 0o666)
    return dest


@pytest.fixture
def keys_env(scratch: Path) -> dict[str, str]:
    return {"APPTAINER_KEYSDIR": str(scratch / "keys")}


@pytest.fixture
def fresh(scratch: Path) -> Path:
    path = make_image(scratch / "fresh.sif")
    os.chmod(path, 0o666)
    return path


def import_reference(capsa: Capsa, env: dict[str, str]) -> None:
    result = capsa("key", "import", str(REFERENCE_KEYS / "private.asc"), env=env)
    assert result.returncode == 0, result
    assert f"Key with fingerprint {FINGERPRINT} successfully added to the private keyring" \
        in result.stdout


def test_keyring_lifecycle(any_capsa: Capsa, keys_env: dict[str, str], scratch: Path) -> None:
    import_reference(any_capsa, keys_env)
    keys = Path(keys_env["APPTAINER_KEYSDIR"])
    assert oct(os.stat(keys / "pgp-public").st_mode & 0o777) == "0o600"
    assert oct(os.stat(keys / "pgp-secret").st_mode & 0o777) == "0o600"
    listing = any_capsa("key", "list", env=keys_env, check=True).stdout
    assert listing.startswith(f"Public key listing ({keys}/pgp-public):\n\n0)  User:")
    assert f"Fingerprint:       {FINGERPRINT}" in listing
    assert "Length (in bits):  2048" in listing
    assert "Private key listing" in any_capsa("key", "list", "--secret", env=keys_env).stdout
    again = any_capsa("key", "import", str(REFERENCE_KEYS / "private.asc"), env=keys_env)
    assert again.returncode == 255 and "already belongs to the keyring" in again.stderr
    out = scratch / "pub.asc"
    result = any_capsa("key", "export", "--armor", str(out), env=keys_env, check=True)
    assert f"Public key with fingerprint {FINGERPRINT} correctly exported" in result.stdout
    assert out.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    any_capsa("key", "remove", FINGERPRINT, env=keys_env, check=True)
    assert FINGERPRINT not in any_capsa("key", "list", env=keys_env).stdout
    gone = any_capsa("key", "remove", FINGERPRINT, env=keys_env)
    assert gone.returncode == 255 and "no key matching" in gone.stderr


def test_reference_images_verify(any_capsa: Capsa, keys_env: dict[str, str]) -> None:
    import_reference(any_capsa, keys_env)
    image = str(REFERENCE_IMAGES / "one-group-signed-pgp.sif")
    result = any_capsa("verify", image, env=keys_env)
    assert result.returncode == 0, result
    assert "INFO:    Verifying image with PGP key material" in result.stderr
    assert f"INFO:    Verified signature(s) from image '{image}'" in result.stderr
    assert "[LOCAL]" in result.stdout and "Signing entity: Unit Test <unit@test.com>" \
        in result.stdout
    assert "Objects verified:\nID  |GROUP   |LINK    |TYPE\n" in result.stdout
    assert "1   |1       |NONE    |FS\n" in result.stdout
    legacy = str(REFERENCE_IMAGES / "one-group-signed-legacy.sif")
    assert any_capsa("verify", legacy, env=keys_env).returncode == 255
    any_capsa("verify", "--legacy-insecure", legacy, env=keys_env, check=True)
    any_capsa("verify", "--legacy-insecure", "--all",
              str(REFERENCE_IMAGES / "one-group-signed-legacy-all.sif"), env=keys_env, check=True)
    any_capsa("verify", "--legacy-insecure", "--group-id", "1",
              str(REFERENCE_IMAGES / "one-group-signed-legacy-group.sif"), env=keys_env,
              check=True)
    for kind in ("ed25519", "rsa"):
        any_capsa("verify", "--key", str(REFERENCE_KEYS / f"{kind}-public.pem"),
                  str(REFERENCE_IMAGES / "one-group-signed-dsse.sif"), check=True)


def test_json_output(capsa: Capsa, keys_env: dict[str, str]) -> None:
    import_reference(capsa, keys_env)
    ok = capsa("verify", "--json", str(REFERENCE_IMAGES / "one-group-signed-pgp.sif"),
               env=keys_env, check=True)
    document = json.loads(ok.stdout)
    assert document["Signatures"] == 1
    assert [k["Signer"]["DataCheck"] for k in document["SignerKeys"]] == [True, True]
    assert document["SignerKeys"][0]["Signer"]["Fingerprint"] == FINGERPRINT.lower()
    bad = capsa("verify", "--json", str(REFERENCE_IMAGES / "one-group.sif"), env=keys_env)
    assert bad.returncode == 255
    assert json.loads(bad.stdout) == {"Signatures": 0, "SignerKeys": None}


def test_sign_and_verify_pgp(any_capsa: Capsa, keys_env: dict[str, str], fresh: Path) -> None:
    import_reference(any_capsa, keys_env)
    result = any_capsa("sign", str(fresh), env=keys_env)
    assert result.returncode == 0, result
    assert "INFO:    Signing image with PGP key material" in result.stderr
    assert f"INFO:    Signature created and applied to image '{fresh}'" in result.stderr
    any_capsa("verify", str(fresh), env=keys_env, check=True)
    any_capsa("verify", "--sif-id", "2", str(fresh), env=keys_env, check=True)
    any_capsa("verify", "--group-id", "1", "--local", str(fresh), env=keys_env, check=True)
    any_capsa("key", "remove", FINGERPRINT, env=keys_env, check=True)
    unknown = any_capsa("verify", str(fresh), env=keys_env)
    assert unknown.returncode == 255
    assert "FATAL:   Failed to verify container: integrity: signature object 3 not valid: " \
        "openpgp: signature made by unknown entity" in unknown.stderr


def test_sign_and_verify_pem(any_capsa: Capsa, fresh: Path) -> None:
    key = str(REFERENCE_KEYS / "ecdsa-private.pem")
    result = any_capsa("sign", "--key", key, str(fresh))
    assert result.returncode == 0, result
    assert f"Signing image with key material from '{key}'" in result.stderr
    any_capsa("verify", "--key", str(REFERENCE_KEYS / "ecdsa-public.pem"), str(fresh),
              check=True)
    other = any_capsa("verify", "--key", str(REFERENCE_KEYS / "rsa-public.pem"), str(fresh))
    assert other.returncode == 255 and "dsse: verify envelope failed" in other.stderr


def test_unsigned_and_altered(any_capsa: Capsa, keys_env: dict[str, str], fresh: Path) -> None:
    import_reference(any_capsa, keys_env)
    unsigned = any_capsa("verify", str(fresh), env=keys_env)
    assert unsigned.returncode == 255
    assert "signature not found for object group 1" in unsigned.stderr
    any_capsa("sign", "--keyidx", "0", str(fresh), env=keys_env, check=True)
    data = bytearray(fresh.read_bytes())
    data[-3000] ^= 0x20  # inside the partition
    fresh.write_bytes(bytes(data))
    altered = any_capsa("verify", str(fresh), env=keys_env)
    assert altered.returncode == 255
    assert "data object integrity compromised: 2" in altered.stderr
    assert "Error encountered during signature verification" in altered.stdout


def test_new_pair_and_passphrases(any_capsa: Capsa, keys_env: dict[str, str],
                                  fresh: Path) -> None:
    made = any_capsa("key", "newpair", "--name", "Jane Doe", "--email", "jane@example.com",
                     "--comment", "test key", "--password", "s3cret", "--bit-length", "1024",
                     env=keys_env, timeout=600)
    assert made.returncode == 0, made
    assert "Generating Entity and OpenPGP Key Pair... done" in made.stdout
    listing = any_capsa("key", "list", "--secret", env=keys_env).stdout
    assert "Jane Doe (test key) <jane@example.com>" in listing
    before = sha256_file(fresh)
    wrong = any_capsa("sign", str(fresh), env=keys_env, input="nope\n")
    assert wrong.returncode == 255 and "passphrase" in wrong.stderr
    assert sha256_file(fresh) == before
    any_capsa("sign", str(fresh), env=keys_env, input="s3cret\n", check=True)
    verified = any_capsa("verify", str(fresh), env=keys_env, check=True)
    assert "Signing entity: Jane Doe (test key) <jane@example.com>" in verified.stdout
    bad_index = any_capsa("sign", "--keyidx", "3", str(fresh), env=keys_env)
    assert bad_index.returncode == 255 and "index out of range" in bad_index.stderr


def test_bad_input_changes_nothing(any_capsa: Capsa, keys_env: dict[str, str], fresh: Path,
                                   scratch: Path) -> None:
    before = sha256_file(fresh)
    bogus = scratch / "bogus.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    os.chmod(bogus, 0o644)
    not_key = any_capsa("sign", "--key", str(bogus), str(fresh))
    assert not_key.returncode == 255 and "not a PEM private key" in not_key.stderr
    not_pub = any_capsa("verify", "--key", str(bogus), str(fresh))
    assert not_pub.returncode == 255 and "not a PEM public key" in not_pub.stderr
    empty = any_capsa("sign", str(fresh), env=keys_env)
    assert empty.returncode == 255 and "keyring is empty" in empty.stderr
    keys = Path(keys_env["APPTAINER_KEYSDIR"])
    keys.mkdir(mode=0o777)
    ring = keys / "pgp-public"
    ring.write_bytes((REFERENCE_KEYS / "private.asc").read_bytes()[:200])
    os.chmod(ring, 0o666)
    ring_before = sha256_file(ring)
    truncated = any_capsa("verify", str(REFERENCE_IMAGES / "one-group-signed-pgp.sif"),
                          env=keys_env)
    assert truncated.returncode == 255 and "is corrupt" in truncated.stderr
    broken = any_capsa("key", "import", str(REFERENCE_KEYS / "private.asc"), env=keys_env)
    assert broken.returncode == 255 and "is corrupt" in broken.stderr
    assert sha256_file(ring) == ring_before
    assert sha256_file(fresh) == before
    assert "Traceback" not in truncated.stderr + broken.stderr + not_key.stderr


def test_encrypted_pem_key(any_capsa: Capsa, fresh: Path, scratch: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = scratch / "enc.pem"
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pem-pass")))
    public = scratch / "enc.pub.pem"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    os.chmod(private, 0o644)
    os.chmod(public, 0o644)
    before = sha256_file(fresh)
    wrong = any_capsa("sign", "--key", str(private), str(fresh), input="nope")
    assert wrong.returncode == 255 and "incorrect password" in wrong.stderr
    assert sha256_file(fresh) == before
    any_capsa("sign", "--key", str(private), str(fresh), input="pem-pass", check=True)
    any_capsa("verify", "--key", str(public), str(fresh), check=True)


def test_protected_secret_key_round_trip(any_capsa: Capsa, scratch: Path) -> None:
    first = {"APPTAINER_KEYSDIR": str(scratch / "first")}
    second = {"APPTAINER_KEYSDIR": str(scratch / "second")}
    any_capsa("key", "newpair", "-N", "Round Trip", "-E", "rt@example.com", "-C", "",
              "-P", "rt-pass", "-b", "1024", env=first, check=True)
    exported = scratch / "secret.gpg"
    bad = any_capsa("key", "export", "--secret", str(exported), env=first, input="nope\n")
    assert bad.returncode == 255 and "passphrase" in bad.stderr and not exported.exists()
    any_capsa("key", "export", "--secret", str(exported), env=first, input="rt-pass\n",
              check=True)
    refused = any_capsa("key", "import", str(exported), env=second, input="nope\n")
    assert refused.returncode == 255 and "passphrase" in refused.stderr
    assert not (scratch / "second" / "pgp-secret").exists()
    done = any_capsa("key", "import", str(exported), env=second, input="rt-pass\n")
    assert done.returncode == 0, done
    assert "successfully added to the private keyring" in done.stdout
    assert "Round Trip () <rt@example.com>" in any_capsa("key", "list", "-s", env=second).stdout
