"""Manifests and indexes as data: parsing (hostile input: every field is
checked), platform matching, and the host's platform.

The one descriptor parser and the one platform selector of every OCI
source: :mod:`capsa.registry.client` (``docker://``) and :mod:`capsa.oci`
(``oci:``, ``oci-archive:``) hand their bytes here, so that one index gives
one choice whichever way it arrived.  Pure functions.
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


# containers/image's variant compatibility: per architecture, its variants
# from the most capable to the most compatible.  A CPU of one variant runs
# those after it too (an arm/v7 CPU runs arm/v6 and arm/v5 images).
_COMPATIBLE_VARIANTS: dict[str, tuple[str, ...]] = {
    "arm": ("v8", "v7", "v6", "v5"),
    "arm64": ("v8",),
}


def wanted_variants(want: Platform) -> tuple[str, ...]:
    """The variants an index entry may carry for *want*, best first, in
    containers/image's order: the asked-for variant, the older ones it
    runs, then an entry that names no variant; with no variant asked for,
    the entry that names none first, then every known variant."""
    known = _COMPATIBLE_VARIANTS.get(want.architecture, ())
    if not want.variant:
        return ("", *known)
    if want.variant in known:
        return (*known[known.index(want.variant):], "")
    return (want.variant, "")


def platform_rank(have: Platform, want: Platform) -> int | None:
    """How well an image for *have* fits *want* (0 is best), or ``None``
    when it does not run there.  An unknown variant fits only when no
    variant was asked for (as Apptainer's go-containerregistry takes it),
    after every known one."""
    if have.os != want.os or have.architecture != want.architecture:
        return None
    variants = wanted_variants(want)
    if have.variant in variants:
        return variants.index(have.variant)
    return None if want.variant else len(variants)


def platform_matches(have: Platform, want: Platform) -> bool:
    return platform_rank(have, want) is not None


def select_manifest(entries: Sequence[Descriptor], want: Platform) -> Descriptor:
    """The one platform selector (``docker://``, ``oci:``, ``oci-archive:``):
    the image manifest among *entries* that fits *want* best, the first of
    equals in the index's order; :class:`NotFoundError` naming the
    platforms there are otherwise.  Entries without a platform, and entries
    that are not image manifests (nested indexes, artifacts), never match."""
    best: tuple[int, Descriptor] | None = None
    for entry in entries:
        if entry.platform is None or entry.media_type not in MANIFEST_TYPES:
            continue
        rank = platform_rank(entry.platform, want)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, entry)
    if best is not None:
        return best[1]
    have = ", ".join(platform_names(entries)) or "none"
    raise NotFoundError(f"no image for platform {want} in the index "
                        f"(it has: {have}); choose one with --arch or --platform")


def platform_names(entries: Sequence[Descriptor]) -> list[str]:
    """The platforms an index offers, attestations (``unknown``) left out."""
    return [str(d.platform) for d in entries
            if d.platform is not None and d.platform.os != "unknown"]


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
        return platform_names(self.manifests)

    def select(self, want: Platform) -> Descriptor:
        """The manifest for *want* (:func:`select_manifest`)."""
        return select_manifest(self.manifests, want)


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
    """The one parser of descriptors (index entries, configs, layers) from
    registries, layouts and archives: every field checked, a
    :class:`FormatError` naming *what* otherwise."""
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
    """The platform an image config says it is for (``os``,
    ``architecture``, ``variant``).  A field left out reads as ``linux``,
    ``""``, ``""`` (the caller then keeps the platform it asked for); a
    field that is not a string is a :class:`FormatError`."""
    os_name = config.get("os") or "linux"
    arch = config.get("architecture") or ""
    variant = config.get("variant") or ""
    if not isinstance(arch, str) or not isinstance(os_name, str) or not isinstance(variant, str):
        raise FormatError("the image config's os, architecture or variant is not a string")
    return Platform(os_name, arch, variant)
