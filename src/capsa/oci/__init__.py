"""Where OCI images come from: registries, OCI layout directories, OCI
archives and ``docker save`` archives.  Every source ends in the same
:class:`ImageContent`: a parsed config and layer files on disk, bottom
first, each with the digest and size to check while it is read.

Descriptors, manifests, indexes, platform choice and an image config's
platform are read by :mod:`capsa.registry.manifest` for every source, so
that ``docker://`` and ``oci:`` choose alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from capsa.digest import (
    DOCKER_LAYER_GZIP,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    Descriptor,
    Platform,
)
from capsa.errors import FormatError
from capsa.jsondoc import MAX_SIZE
from capsa.registry.manifest import Manifest, check_kind, media_type_of, parse_manifest
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


def image_manifest(doc: Mapping[str, Any], declared: str) -> Manifest:
    """The image manifest *doc* (its media type *declared* by whoever
    handed it over), its layers of types we can convert."""
    manifest = parse_manifest(doc, media_type_of(doc, declared))
    check_layer_types(manifest.layers)
    return manifest


def check_layer_types(layers: Sequence[Descriptor]) -> None:
    """Every layer is a tar we can convert (not a SIF, a chart, a blob)."""
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise FormatError(f"unsupported layer media type {layer.media_type!r}")


def is_index(doc: Mapping[str, Any], declared: str) -> bool:
    """Whether *doc* is an index (else an image manifest; else FormatError)."""
    return check_kind(media_type_of(doc, declared)) == "index"
