"""Tiny OCI images written with Python, for the registry tests.

``make_layout(dir, tag, files)`` writes a one-layer OCI layout;
``make_multiarch_layout(dir, tag, arches)`` an index of several platforms.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Image:
    """One platform's blobs: manifest, config, layers (bytes by digest)."""

    manifest: bytes
    config: bytes
    layers: list[bytes]
    arch: str

    @property
    def blobs(self) -> dict[str, bytes]:
        return {sha256(b): b for b in [self.config, *self.layers]}

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_image(files: Mapping[str, bytes], arch: str = "amd64", variant: str = "",
               env: Sequence[str] = ("PATH=/bin",)) -> Image:
    layer = gzip.compress(layer_tar(files), mtime=0)
    diff_id = sha256(gzip.decompress(layer))
    platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    config = json.dumps({
        **platform,
        "config": {"Env": list(env), "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER_GZIP, layer)],
    }, sort_keys=True).encode()
    return Image(manifest, config, [layer], arch)


def make_index(images: Sequence[Image]) -> bytes:
    manifests = []
    for image in images:
        config = json.loads(image.config)
        platform = {k: config[k] for k in ("architecture", "os", "variant") if k in config}
        manifests.append(descriptor(OCI_MANIFEST, image.manifest, platform=platform))
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": manifests}, sort_keys=True).encode()


def _write_blob(layout: Path, data: bytes) -> None:
    path = layout / "blobs" / "sha256" / sha256(data).split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_layout(layout: Path, tag: str, top: bytes, media_type: str,
                 images: Sequence[Image]) -> Path:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for image in images:
        for blob in [image.manifest, *image.blobs.values()]:
            _write_blob(layout, blob)
    _write_blob(layout, top)
    index = {"schemaVersion": 2, "manifests": [descriptor(
        media_type, top, annotations={"org.opencontainers.image.ref.name": tag})]}
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def make_layout(layout: Path, tag: str, files: Mapping[str, bytes]) -> Image:
    image = make_image(files)
    write_layout(layout, tag, image.manifest, OCI_MANIFEST, [image])
    return image


def make_multiarch_layout(layout: Path, tag: str,
                          arches: Sequence[tuple[str, str]]) -> list[Image]:
    images = [make_image({"arch": f"{a}{v}".encode()}, a, v) for a, v in arches]
    write_layout(layout, tag, make_index(images), OCI_INDEX, images)
    return images
