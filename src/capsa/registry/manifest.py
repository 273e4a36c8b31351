"""Manifests and indexes as data: parsing (hostile input: every field is
checked), platform matching, and the host's platform.

Pure functions; :mod:`capsa.registry.client` fetches the bytes.
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from capsa.digest import (
    DOCKER_CONFIG,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    Descriptor,
    Platform,
)
from capsa.errors import FormatError, NotFoundError, UsageError
from capsa.jsondoc import MAX_SIZE

# Manifests are small; refuse anything absurd before parsing it.
MAX_MANIFEST_SIZE = MAX_SIZE
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
DOCKER_SCHEMA1 = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})

# Python's platform.machine() -> Go's GOARCH (and variant) names.
_MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"),
    "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""), "loongarch64": ("loong64", ""),
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def host_platform() -> Platform:
    """The platform this machine runs, in OCI's words."""
    machine = _platform.machine().lower()
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` or a bare ``arch`` (``--arch``)."""
    parts = text.strip().split("/")
    if len(parts) == 1 and parts[0]:
        arch, variant = _MACHINES.get(parts[0], (parts[0], ""))
        return Platform("linux", arch, variant if parts[0] != arch else "")
    if len(parts) in (2, 3) and all(parts):
        return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant]")


def platform_matches(have: Platform, want: Platform) -> bool:
    if have.os != want.os or have.architecture != want.architecture:
        return False
    if not want.variant:
        return True
    default = _DEFAULT_VARIANT.get(want.architecture, "")
    return (have.variant or default) == (want.variant or default)


def _platform_score(have: Platform, want: Platform) -> int:
    """Among matches, prefer the wanted (or default) variant exactly."""
    wanted = want.variant or _DEFAULT_VARIANT.get(want.architecture, "")
    return 1 if (have.variant or _DEFAULT_VARIANT.get(have.architecture, "")) == wanted else 0


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest: its config and layers."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Index:
    """An OCI index or Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]

    def platforms(self) -> list[str]:
        return [str(d.platform) for d in self.manifests
                if d.platform is not None and d.platform.os != "unknown"]

    def select(self, want: Platform) -> Descriptor:
        """The manifest for *want*; :class:`NotFoundError` naming the
        platforms there are otherwise."""
        matches = [d for d in self.manifests if d.platform is not None
                   and d.media_type in MANIFEST_TYPES and platform_matches(d.platform, want)]
        if matches:
            return max(matches, key=lambda d: _platform_score(d.platform or want, want))
        have = ", ".join(self.platforms()) or "none"
        raise NotFoundError(f"no image for platform {want} in the index "
                            f"(it has: {have}); choose one with --arch or --platform")


def media_type_of(doc: Mapping[str, Any], content_type: str) -> str:
    """The document's own ``mediaType``, else the HTTP Content-Type, else a
    guess from its shape (OCI allows leaving the field out)."""
    value = doc.get("mediaType")
    if isinstance(value, str) and value:
        return value
    ctype = content_type.split(";", 1)[0].strip()
    if ctype and ctype not in ("application/json", "application/octet-stream", "text/plain"):
        return ctype
    if "manifests" in doc:
        return "application/vnd.oci.image.index.v1+json"
    if "config" in doc and "layers" in doc:
        return "application/vnd.oci.image.manifest.v1+json"
    return ctype


def _str(obj: Mapping[str, Any], key: str, what: str, required: bool = True) -> str:
    value = obj.get(key, "" if not required else None)
    if not isinstance(value, str):
        raise FormatError(f"{what}: field {key!r} is missing or not a string")
    return value


def parse_descriptor(obj: Any, what: str) -> Descriptor:
    if not isinstance(obj, Mapping):
        raise FormatError(f"{what} is not a JSON object")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool):
        raise FormatError(f"{what}: field 'size' is missing or not an integer")
    platform = obj.get("platform")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise FormatError(f"{what}: annotations are not an object")
    return Descriptor(
        media_type=_str(obj, "mediaType", what),
        digest=_str(obj, "digest", what),
        size=size,
        platform=_parse_platform_obj(platform, what) if platform is not None else None,
        annotations=tuple(sorted((str(k), str(v)) for k, v in annotations.items())),
    )


def _parse_platform_obj(obj: Any, what: str) -> Platform:
    if not isinstance(obj, Mapping):
        raise FormatError(f"{what}: platform is not an object")
    return Platform(_str(obj, "os", what), _str(obj, "architecture", what),
                    _str(obj, "variant", what, required=False))


def _descriptors(value: Any, what: str) -> tuple[Descriptor, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise FormatError(f"{what} is not a list")
    return tuple(parse_descriptor(item, f"{what}[{i}]") for i, item in enumerate(value))


def parse_manifest(doc: Mapping[str, Any], media_type: str,
                   config_types: frozenset[str] | None = IMAGE_CONFIG_TYPES) -> Manifest:
    """An image manifest; *config_types* (``None``: any) says which config
    media types make it an image we can use."""
    config = parse_descriptor(doc.get("config"), "manifest config")
    if config_types is not None and config.media_type not in config_types:
        raise FormatError(
            f"the manifest is not a container image (its config is {config.media_type!r})")
    layers = _descriptors(doc.get("layers", []), "manifest layers")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise FormatError("manifest annotations are not an object")
    return Manifest(media_type, config, layers,
                    {str(k): str(v) for k, v in annotations.items()})


def parse_index(doc: Mapping[str, Any], media_type: str) -> Index:
    return Index(media_type, _descriptors(doc.get("manifests"), "index manifests"))


def check_kind(media_type: str) -> str:
    """``"index"`` or ``"manifest"``; anything else is a clear error."""
    if media_type in INDEX_TYPES:
        return "index"
    if media_type in MANIFEST_TYPES:
        return "manifest"
    if media_type in DOCKER_SCHEMA1:
        raise FormatError("Docker schema 1 manifests are not supported (re-push the image)")
    raise FormatError(f"the manifest is not a container image (media type {media_type!r})")


def config_platform(config: Mapping[str, Any]) -> Platform:
    """The platform an image config says it is for (``architecture``,
    ``os``, ``variant``), to compare with what was asked for when the
    registry had a single manifest rather than an index."""
    arch = config.get("architecture")
    os_name = config.get("os")
    variant = config.get("variant") or ""
    if not isinstance(arch, str) or not isinstance(os_name, str) or not isinstance(variant, str):
        raise FormatError("the image config has no valid architecture/os")
    return Platform(os_name, arch, variant)
