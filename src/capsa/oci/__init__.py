"""Where OCI images come from: registries, OCI layout directories, OCI
archives and ``docker save`` archives.  Every source ends in the same
:class:`ImageContent`: a parsed config and layer files on disk, bottom
first, each with the digest and size to check while it is read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from capsa.digest import (
    DOCKER_LAYER_GZIP,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    Descriptor,
    Platform,
)
from capsa.errors import FormatError, NotFoundError
from capsa.jsondoc import MAX_SIZE
from capsa.registry.manifest import IMAGE_CONFIG_TYPES as CONFIG_TYPES
from capsa.rootfs.layers import LayerFile

LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
})
MAX_JSON = MAX_SIZE  # manifests, indexes and configs are small; refuse giants


@dataclass(frozen=True, slots=True)
class ImageContent:
    """A fetched image, ready to convert."""

    config: Mapping[str, Any]        # the whole image configuration
    layers: tuple[LayerFile, ...]    # bottom first
    platform: Platform
    manifest_digest: str | None = None
    source: str = ""                 # what the user named, for the deffile
    config_digest: str | None = None

    @property
    def run_config(self) -> Mapping[str, Any]:
        """The ``config`` member: Env, Entrypoint, Cmd, Labels..."""
        value = self.config.get("config") or {}
        return value if isinstance(value, Mapping) else {}


def descriptor_from(doc: Any, what: str) -> Descriptor:
    """A Descriptor from its JSON form, checked."""
    if not isinstance(doc, dict):
        raise FormatError(f"{what}: descriptor is not an object")
    try:
        platform = doc.get("platform")
        plat = None
        if isinstance(platform, dict):
            plat = Platform(str(platform.get("os", "")), str(platform.get("architecture", "")),
                            str(platform.get("variant", "") or ""))
        annotations = doc.get("annotations") or {}
        size = doc["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"size {size!r} is not a byte count")
        return Descriptor(str(doc["mediaType"]) if "mediaType" in doc else "",
                          str(doc["digest"]), size, plat,
                          tuple((str(k), str(v)) for k, v in annotations.items()))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise FormatError(f"{what}: malformed descriptor: {err}") from err


def manifest_kind(doc: Mapping[str, Any], declared: str = "") -> str:
    """``index`` or ``manifest`` (media types lie; fields do not)."""
    media = str(doc.get("mediaType") or declared)
    if media in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
        return "index"
    if media in MANIFEST_TYPES or "layers" in doc:
        return "manifest"
    raise FormatError(f"unsupported manifest media type {media!r}: not a container image")


def image_parts(manifest: Mapping[str, Any]) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of an image manifest, checked to be
    a container image (not an artifact such as a SIF or a Helm chart)."""
    config = descriptor_from(manifest.get("config"), "manifest config")
    if config.media_type and config.media_type not in CONFIG_TYPES:
        raise FormatError(f"manifest is not a container image (config media type "
                          f"{config.media_type!r})")
    layers_doc = manifest.get("layers")
    if not isinstance(layers_doc, list):
        raise FormatError("manifest has no layer list")
    layers = [descriptor_from(item, "manifest layer") for item in layers_doc]
    for layer in layers:
        if layer.media_type and layer.media_type not in LAYER_TYPES:
            raise FormatError(f"unsupported layer media type {layer.media_type!r}")
    return config, layers


def platform_of(config: Mapping[str, Any]) -> Platform:
    return Platform(str(config.get("os") or "linux"), str(config.get("architecture") or ""),
                    str(config.get("variant") or ""))


def select_platform(manifests: Sequence[Descriptor], want: Platform) -> Descriptor:
    """The entry of an index for *want*; NotFoundError naming what exists."""
    def matches(p: Platform | None, variant: bool) -> bool:
        return (p is not None and p.os == want.os and p.architecture == want.architecture
                and (not variant or not want.variant or p.variant == want.variant))

    for strict in (True, False):
        for entry in manifests:
            if matches(entry.platform, strict):
                return entry
    available = sorted({str(m.platform) for m in manifests if m.platform is not None
                        and m.platform.os != "unknown"})
    raise NotFoundError(f"no image found for platform {want} (available: "
                        f"{', '.join(available) or 'none'})")
