"""``oras://``: a SIF stored in a registry as an OCI artifact, as Apptainer
and the ``oras`` tool store it: an image manifest whose config is ``{}`` of
type ``application/vnd.sylabs.sif.config.v1+json`` and whose one layer is
the SIF file (``application/vnd.sylabs.sif.layer.v1.sif``, titled with its
file name).  Pulled SIFs are cached by layer digest under ``cache/oras``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from capsa import report
from capsa.content import CacheBlocked, ContentCache, atomic_file, copy_atomic
from capsa.digest import (
    OCI_MANIFEST,
    SIF_CONFIG,
    SIF_LAYER,
    Descriptor,
    digest_hex,
    hasher_for,
    sha256_digest,
)
from capsa.errors import FormatError, NotFoundError
from capsa.oci.options import PullOptions
from capsa.reference import parse_reference
from capsa.registry import RegistryOptions, open_client

log = report.getLogger("capsa.oci.oras")

EMPTY_CONFIG = b"{}"
TITLE = "org.opencontainers.image.title"


def pull_oras(name: str, dest: Path, options: PullOptions) -> None:
    """Fetch the SIF that ``oras://name`` holds into *dest* (verified)."""
    client = open_client(options.registry or RegistryOptions())
    with client:
        image = client.resolve(parse_reference(f"oras://{name}"), options.platform,
                               config_types=None)
        layers = [d for d in image.layers if d.media_type == SIF_LAYER]
        if len(layers) != 1:
            kinds = ", ".join(sorted({d.media_type for d in image.layers})) or "none"
            raise FormatError(f"oras://{name} is not a SIF artifact (layers: {kinds})")
        layer = layers[0]

        def fetch(desc: Descriptor, out: object) -> None:
            client.fetch_blob(image.reference, desc, out)  # type: ignore[arg-type]

        if options.cache is not None:
            try:
                _through_cache(options.cache, layer, fetch, dest)
                return
            except CacheBlocked as err:
                log.warning("%s: fetching without the cache", err)
        with atomic_file(dest, 0o755) as out:
            fetch(layer, out)
        _check_sif(dest)


def _through_cache(cache: ContentCache, layer: Descriptor,
                   fetch: Callable[[Descriptor, Any], None], dest: Path) -> None:
    """The SIF from the cache (a trusted user's file, whose digest is checked
    through the descriptor it is then copied from), fetched there if need be."""
    cache.ensure()
    cached = cache.dir_for("oras") / digest_hex(layer.digest)
    with cache.lock(f"oras-{digest_hex(layer.digest)}"):
        fd = cache.open_entry(cached)
        if fd is not None and _holds(fd, layer):
            log.info("Using cached SIF image")
        else:
            if fd is not None:
                os.close(fd)
                cache.evict(cached)
            with atomic_file(cached, 0o755) as out:
                fetch(layer, out)
            fd = cache.open_entry(cached)
    if fd is None:
        raise CacheBlocked(f"cache entry {cached} vanished as it was written")
    try:
        _check_sif(Path(f"/proc/self/fd/{fd}"))
        copy_atomic(fd, dest)
    finally:
        os.close(fd)


def _holds(fd: int, layer: Descriptor) -> bool:
    """Does the open file *fd* hold exactly the blob *layer*?"""
    hasher = hasher_for(layer.digest)
    size = 0
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        hasher.update(chunk)
        size += len(chunk)
        offset += len(chunk)
    algorithm = layer.digest.split(":", 1)[0]
    return size == layer.size and f"{algorithm}:{hasher.hexdigest()}" == layer.digest


def _check_sif(path: Path) -> None:
    from capsa.sif import SifImage

    with SifImage.open(path):
        pass


def push_oras(sif: Path, name: str, options: RegistryOptions) -> Descriptor:
    """Upload *sif* as ``oras://name``; the manifest's descriptor."""
    if not sif.is_file():
        raise NotFoundError(f"{sif} does not exist")
    _check_sif(sif)
    digest = _file_digest(sif)
    layer = Descriptor(SIF_LAYER, digest, sif.stat().st_size)
    config = Descriptor(SIF_CONFIG, sha256_digest(EMPTY_CONFIG), len(EMPTY_CONFIG))
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": SIF_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": SIF_LAYER, "digest": layer.digest, "size": layer.size,
                    "annotations": {TITLE: sif.name}}],
    }
    ref = parse_reference(f"oras://{name}")
    with open_client(options) as client:
        client.push_blob(ref, config, EMPTY_CONFIG)
        with sif.open("rb") as source:
            client.push_blob(ref, layer, source)
        return client.push_manifest(ref, OCI_MANIFEST, json.dumps(manifest).encode())


def _file_digest(path: Path) -> str:
    import hashlib

    hasher = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"

