"""``docker://``: an image from a registry, its blobs fetched into the cache
in parallel (each verified while it streams, each downloaded once even when
several processes want it), through :mod:`capsa.registry`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from capsa import report
from capsa.content import ContentCache
from capsa.digest import Descriptor, Platform, hasher_for
from capsa.errors import DigestMismatchError, FormatError
from capsa.jsondoc import load_object
from capsa.oci import MAX_JSON, ImageContent, check_layer_types
from capsa.oci.layout import check_bytes
from capsa.reference import parse_reference
from capsa.registry import RegistryClient, RegistryOptions, ResolvedImage, open_client
from capsa.registry.manifest import config_platform
from capsa.rootfs.layers import LayerFile

log = report.getLogger("capsa.oci.registry")

MAX_PARALLEL = 4
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True, eq=False)
class RemoteImage:
    """A resolved image and the client that can fetch its blobs."""

    client: RegistryClient
    resolved: ResolvedImage
    platform: Platform

    @property
    def manifest_digest(self) -> str:
        return self.resolved.manifest.digest


def resolve(name: str, platform: Platform, options: RegistryOptions | None) -> RemoteImage:
    client = open_client(options or RegistryOptions())
    resolved = client.resolve(parse_reference(name), platform)
    return RemoteImage(client, resolved, resolved.platform or platform)


def fetch(image: RemoteImage, cache: ContentCache, progress: Progress | None,
          source: str) -> ImageContent:
    """Config and layers into *cache*; the layers as files to convert."""
    check_layer_types(image.resolved.layers)
    cache.ensure()
    config_desc = image.resolved.config
    if config_desc.size > MAX_JSON:
        raise FormatError(f"image config {config_desc.digest} is too large")
    cache.put_blob(image.resolved.manifest, image.resolved.manifest_bytes)
    config = load_object(_config_bytes(image, cache, config_desc), "image config")
    layers = image.resolved.layers
    workers = max(1, min(MAX_PARALLEL, len(layers)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        paths = list(pool.map(lambda d: _layer(image, cache, d, progress), layers))
    files = tuple(LayerFile(p) for p in paths)
    platform = config_platform(config)
    if not platform.architecture:
        platform = image.platform
    return ImageContent(config, files, platform, image.manifest_digest, source,
                        config_desc.digest)


def _config_bytes(image: RemoteImage, cache: ContentCache, desc: Descriptor) -> bytes:
    """The image config through the cache, fetched again if the copy there is bad."""
    def download(d: Descriptor, out: BinaryIO) -> None:
        image.client.fetch_blob(image.resolved.reference, d, out)

    path = cache.get_blob(desc, download)
    data = path.read_bytes()
    try:
        check_bytes(data, desc)
    except DigestMismatchError:
        cache.evict(path)
        data = cache.get_blob(desc, download).read_bytes()
        check_bytes(data, desc)
    return data


def _layer(image: RemoteImage, cache: ContentCache, desc: Descriptor,
           progress: Progress | None) -> Path:
    """The verified layer blob: fetched now, or reused after a fresh check."""
    downloaded = False

    def download(d: Descriptor, out: BinaryIO) -> None:
        nonlocal downloaded
        downloaded = True
        image.client.fetch_blob(image.resolved.reference, d, out,
                                progress=_counter(progress, d))

    path = cache.get_blob(desc, download)
    if not downloaded and not _intact(path, desc):
        cache.evict(path)
        path = cache.get_blob(desc, download)
    if progress is not None:
        progress(desc.digest, desc.size, desc.size)
    return path


def _counter(progress: Progress | None, desc: Descriptor) -> Callable[[int], None] | None:
    if progress is None:
        return None
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(desc.digest, done, desc.size)

    return step


def _intact(path: Path, desc: Descriptor) -> bool:
    """Re-hash a blob found in the cache (another process, another day)."""
    hasher = hasher_for(desc.digest)
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            hasher.update(chunk)
    ok = f"{desc.digest.split(':', 1)[0]}:{hasher.hexdigest()}" == desc.digest
    if not ok:
        log.warning("cached blob %s is corrupt: fetching it again", desc.digest)
    return ok
