"""DSSE envelopes signed with PEM keys (ECDSA, Ed25519, RSA).

The envelope is the JSON ``{"payloadType": ..., "payload": base64,
"signatures": [{"keyid": ..., "sig": base64}]}`` and what is signed is its
pre-authentication encoding ``DSSEv1 <len> <type> <len> <payload>``.  As
the reference (sigstore's signers with SHA-256): RSA signs PKCS#1 v1.5,
ECDSA signs ASN.1 DER, Ed25519 signs the message itself.  The key ID is the
OpenSSH SHA256 fingerprint of the public key.

:mod:`cryptography` is imported here only, so nothing else pays for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from capsa.errors import FormatError, SignatureError

PAYLOAD_TYPE = "application/vnd.sylabs.sif-metadata+json"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as pem:
            return pem.read()
    except OSError as err:
        raise SignatureError(f"Failed to load key material: {path}: {err.strerror}") from err


def load_private_key(path: str, password: bytes | None = None) -> PrivateKey:
    """The private key in PEM file *path* (decrypted with *password*)."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as err:
        if password is None:
            raise SignatureError(
                f"Failed to load key material: {path} is encrypted; a password is needed"
            ) from err
        raise SignatureError(f"Failed to load key material: {path} is not encrypted") from err
    except (ValueError, UnsupportedAlgorithm) as err:
        hint = "incorrect password or " if password is not None else ""
        raise SignatureError(
            f"Failed to load key material: {hint}{path} is not a PEM private key"
        ) from err
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise SignatureError(f"Failed to load key material: unsupported key type in {path}")
    return key


def is_encrypted_pem(path: str) -> bool:
    data = _read(path)
    return b"ENCRYPTED" in data.split(b"\n", 2)[0] + data[:200]


def load_public_key(path: str) -> PublicKey:
    """The public key in PEM file *path* (a private key yields its public half)."""
    data = _read(path)
    try:
        key: Any = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            raise SignatureError(
                f"Failed to load key material: {path} is not a PEM public key"
            ) from err
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
                      | ed25519.Ed25519PublicKey):
        raise SignatureError(f"Failed to load key material: unsupported key type in {path}")
    return key


def key_id(public: PublicKey) -> str:
    """``SHA256:`` and the unpadded base64 SHA-256 of the SSH wire form of the key."""
    ssh = public.public_bytes(serialization.Encoding.OpenSSH,
                              serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(ssh.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _ecdsa_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    del curve  # the reference signs with SHA-256 whatever the curve
    return hashes.SHA256()


def _sign(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(_ecdsa_hash(key.curve)))
    return key.sign(message)


def _verify(key: PublicKey, signature: bytes, message: bytes, hash_name: str) -> bool:
    algorithm = _HASHES.get(hash_name, hashes.SHA256)()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(algorithm))
        else:
            key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512,
}


def sign_envelope(payload: bytes, key: PrivateKey) -> bytes:
    """The DSSE envelope over *payload*, as the reference encodes it (JSON + newline)."""
    signature = _sign(key, pae(PAYLOAD_TYPE, payload))
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()),
                        "sig": base64.b64encode(signature).decode()}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode() + b"\n"


def _decode(data: bytes) -> dict[str, Any] | None:
    from capsa.jsondoc import load_object

    try:
        return load_object(data, "DSSE envelope", max_size=16 << 20)
    except FormatError:
        return None


def is_envelope(data: bytes) -> bool:
    """Is *data* a DSSE envelope over SIF metadata?"""
    document = _decode(data)
    return document is not None and document.get("payloadType") == PAYLOAD_TYPE


def _b64(text: object) -> bytes:
    if not isinstance(text, str):
        raise SignatureError("dsse: malformed envelope")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as err:
            raise SignatureError("dsse: malformed envelope") from err


def verify_envelope(data: bytes, keys: list[PublicKey], hash_name: str = "SHA256") -> bytes:
    """The payload, if any signature in the envelope verifies with one of *keys*."""
    document = _decode(data)
    if document is None:
        raise SignatureError("dsse: malformed envelope")
    payload_type = document.get("payloadType")
    payload = _b64(document.get("payload"))
    message = pae(str(payload_type), payload)
    signatures = document.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise SignatureError("dsse: verify envelope failed: no signatures")
    accepted = any(
        isinstance(entry, dict) and _verify(key, _b64(entry.get("sig")), message, hash_name)
        for entry in signatures
        for key in keys
    )
    if not accepted:
        raise SignatureError("dsse: verify envelope failed: no valid signature "
                             "for the given key(s)")
    if payload_type != PAYLOAD_TYPE:
        raise SignatureError(f"unexpected DSSE payload type: {payload_type}")
    return payload
