"""``oci:DIR[:TAG]``: an OCI image layout directory (``oci-layout``,
``index.json``, ``blobs/<algo>/<hex>``), read in place.  Manifests and
configs are verified when read; layers while they are converted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capsa.digest import Descriptor, Platform, hasher_for, validate_digest
from capsa.errors import DigestMismatchError, FormatError, NotFoundError
from capsa.jsondoc import load_file, load_object, read_document
from capsa.oci import MAX_JSON, ImageContent, image_manifest, is_index
from capsa.registry.manifest import config_platform, parse_descriptor, select_manifest
from capsa.rootfs.layers import LayerFile

REF_NAME = "org.opencontainers.image.ref.name"


class OCILayout:
    """An OCI layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        if not (root / "index.json").is_file():
            raise NotFoundError(f"{root} is not an OCI image layout (no index.json)")

    def blob_path(self, digest: str) -> Path:
        algo, hexpart = validate_digest(digest).split(":", 1)
        return self.root / "blobs" / algo / hexpart

    def read_blob(self, desc: Descriptor, what: str) -> bytes:
        """A small blob, checked against its descriptor."""
        if desc.size > MAX_JSON:
            raise FormatError(f"{what} {desc.digest} is too large ({desc.size} bytes)")
        path = self.blob_path(desc.digest)
        try:
            data = read_document(path, f"{what} {desc.digest}", desc.size)
        except FileNotFoundError:
            raise NotFoundError(f"{what} {desc.digest} is missing from {self.root}") from None
        check_bytes(data, desc)
        return data

    def layer(self, desc: Descriptor) -> LayerFile:
        path = self.blob_path(desc.digest)
        if not path.is_file():
            raise NotFoundError(f"layer {desc.digest} is missing from {self.root}")
        return LayerFile(path, desc.digest, desc.size)

    def index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        doc = load_file(path, f"{path}")
        if not isinstance(doc, dict):
            raise FormatError(f"{path} is not a JSON object")
        return doc

    def top_descriptor(self, tag: str | None) -> Descriptor:
        """The index entry named *tag*, or the only one."""
        entries = _entries(self.index(), "index.json")
        if tag is not None:
            for entry in entries:
                name = dict(entry.annotations).get(REF_NAME, "")
                if name == tag or name.endswith(f":{tag}"):
                    return entry
            raise NotFoundError(f"no image tagged {tag!r} in {self.root}")
        if len(entries) == 1:
            return entries[0]
        if not entries:
            raise NotFoundError(f"{self.root} holds no image")
        raise NotFoundError(f"{self.root} holds {len(entries)} images: name one with "
                            "oci:DIR:TAG")

    def image(self, tag: str | None, platform: Platform, source: str = "") -> ImageContent:
        """The image *tag* names (an index: its manifest for *platform*)."""
        desc = self.top_descriptor(tag)
        doc = self._document(desc)
        if is_index(doc, desc.media_type):
            desc = select_manifest(_entries(doc, "index"), platform)
            doc = self._document(desc)
        return self._content(desc, doc, source)

    def _document(self, desc: Descriptor) -> dict[str, Any]:
        return load_object(self.read_blob(desc, "manifest"), f"manifest {desc.digest}")

    def _content(self, desc: Descriptor, doc: dict[str, Any], source: str) -> ImageContent:
        manifest = image_manifest(doc, desc.media_type)
        config = load_object(self.read_blob(manifest.config, "image config"), "image config")
        layers = tuple(self.layer(d) for d in manifest.layers)
        return ImageContent(config, layers, config_platform(config), desc.digest, source,
                            manifest.config.digest)


def _entries(index: dict[str, Any], what: str) -> list[Descriptor]:
    manifests = index.get("manifests") or []
    if not isinstance(manifests, list):
        raise FormatError(f"{what}: its manifests are not a list")
    return [parse_descriptor(entry, f"{what} entry {i}") for i, entry in enumerate(manifests)]


def check_bytes(data: bytes, desc: Descriptor) -> None:
    if len(data) != desc.size:
        raise DigestMismatchError(f"blob {desc.digest} is {len(data)} bytes, "
                                  f"expected {desc.size}")
    hasher = hasher_for(desc.digest)
    hasher.update(data)
    actual = f"{desc.digest.split(':', 1)[0]}:{hasher.hexdigest()}"
    if actual != desc.digest:
        raise DigestMismatchError(f"blob digest mismatch: expected {desc.digest}, got {actual}")


def split_layout_ref(text: str) -> tuple[Path, str | None]:
    """``PATH[:TAG]`` (the scheme already removed; PATH a layout or an archive)."""
    path, sep, tag = text.rpartition(":")
    if sep and path and "/" not in tag and Path(path).exists() and not Path(text).exists():
        return Path(path), tag
    return Path(text), None
