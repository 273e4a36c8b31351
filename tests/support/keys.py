"""Key pairs for signing tests, written as PEM files any test user can read."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def write_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh Ed25519 pair as ``NAME-private.pem``/``NAME-public.pem`` (mode 0644)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = directory / f"{name}-private.pem"
    public = directory / f"{name}-public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for path in (private, public):
        path.chmod(0o644)
    return private, public
