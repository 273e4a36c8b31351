"""Content addresses: digests, blob descriptors, and a reader that verifies
digest and size while the bytes stream by.

A :class:`Descriptor` is the seam between the registry client and everything
that stores or converts content: whoever holds one can fetch and check the
blob it names, and nothing else needs to know where it came from.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import BinaryIO

from capsa.errors import DigestMismatchError, FormatError

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^(?P<algo>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)$")

# Media types capsa understands.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SIF_LAYER = "application/vnd.sylabs.sif.layer.v1.sif"
SIF_CONFIG = "application/vnd.sylabs.sif.config.v1+json"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})


def validate_digest(digest: str) -> str:
    """Return *digest* if it is a well-formed ``algo:hex`` we can check."""
    match = _DIGEST.match(digest)
    if match is None:
        raise FormatError(f"invalid digest: {digest!r}")
    algo, hexpart = match.group("algo"), match.group("hex")
    want = _ALGORITHMS.get(algo)
    if want is None:
        raise FormatError(f"unsupported digest algorithm: {algo}")
    if len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise FormatError(f"invalid {algo} digest: {digest!r}")
    return digest


def hasher_for(digest: str) -> hashlib._Hash:
    return hashlib.new(validate_digest(digest).split(":", 1)[0])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_hex(digest: str) -> str:
    """The hex part of a validated digest (safe to use as a file name)."""
    return validate_digest(digest).split(":", 1)[1]


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform: ``linux/amd64``, ``linux/arm/v7``..."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A blob named by content: what it is, its digest and its exact size."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        validate_digest(self.digest)
        if self.size < 0:
            raise FormatError(f"negative size for blob {self.digest}")


class VerifyingReader:
    """Wraps a binary stream; fails at EOF unless digest and size match.

    Reading past the announced size fails at once, so a hostile server can
    not make us store more than it promised.
    """

    def __init__(self, raw: BinaryIO, digest: str, size: int) -> None:
        self._raw = raw
        self._digest = digest
        self._size = size
        self._hash = hasher_for(digest)
        self._seen = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        want = self._size - self._seen + 1 if n < 0 else n
        chunk = self._raw.read(want)
        self._seen += len(chunk)
        if self._seen > self._size:
            raise DigestMismatchError(
                f"blob {self._digest} is larger than its announced size {self._size}"
            )
        if chunk:
            self._hash.update(chunk)
            return chunk
        self._finish()
        return b""

    def _finish(self) -> None:
        self._done = True
        if self._seen != self._size:
            raise DigestMismatchError(
                f"blob {self._digest} is {self._seen} bytes, expected {self._size}"
            )
        actual = f"{self._digest.split(':', 1)[0]}:{self._hash.hexdigest()}"
        if actual != self._digest:
            raise DigestMismatchError(
                f"blob digest mismatch: expected {self._digest}, got {actual}"
            )

    def drain(self, chunk_size: int = 1 << 20) -> None:
        """Read to the end (verifying), discarding the data."""
        while self.read(chunk_size):
            pass
