"""``oci-archive:FILE`` (a tar of an OCI layout) and ``docker-archive:FILE``
(``docker save`` output).  Both are unpacked, regular files only and every
name confined, into a private temporary directory, then read from there."""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from capsa.digest import Platform
from capsa.errors import FormatError, NotFoundError
from capsa.oci import ImageContent
from capsa.oci.layout import OCILayout
from capsa.registry.manifest import config_platform
from capsa.rootfs.layers import LayerFile, clean_name


def unpack_archive(archive: Path, dest: Path) -> None:
    """Regular files and directories of *archive* into *dest*, confined."""
    if not archive.is_file():
        raise NotFoundError(f"archive {archive} does not exist")
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _unpack_member(tar, member, dest)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise FormatError(f"{archive} is not a valid tar archive: {err}") from err


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    name, _repaired = clean_name(member.name)
    if not name:
        return
    target = dest / name
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    if not member.isreg():
        return  # links and devices have no business in an image archive
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:
        return
    with source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def oci_archive(archive: Path, workdir: Path, platform: Platform, tag: str | None,
                source: str) -> ImageContent:
    unpack_archive(archive, workdir)
    return OCILayout(workdir).image(tag, platform, source)


def docker_archive(archive: Path, workdir: Path, source: str, tag: str | None = None
                   ) -> ImageContent:
    """The image in a ``docker save`` tar (the one tagged *tag*, or the first)."""
    unpack_archive(archive, workdir)
    manifest_path = workdir / "manifest.json"
    if not manifest_path.is_file():
        raise FormatError(f"{archive} is not a docker archive (no manifest.json)")
    from capsa.jsondoc import load_file

    entries = load_file(manifest_path, f"{archive}: manifest.json")
    if not isinstance(entries, list) or not entries:
        raise FormatError(f"{archive}: manifest.json lists no image")
    entry = _pick(entries, tag, archive)
    config = load_file(_member(workdir, entry.get("Config"), archive), "image config")
    if not isinstance(config, dict):
        raise FormatError(f"{archive}: the image config is not a JSON object")
    layers = tuple(LayerFile(_member(workdir, layer, archive))
                   for layer in entry.get("Layers") or [])
    return ImageContent(config, layers, config_platform(config), None, source)


def _pick(entries: list[Any], tag: str | None, archive: Path) -> dict[str, Any]:
    for entry in entries:
        if not isinstance(entry, dict):
            raise FormatError(f"{archive}: malformed manifest.json")
        tags = [str(t) for t in entry.get("RepoTags") or []]
        if tag is None or tag in tags or any(t.endswith(f"/{tag}") for t in tags):
            return entry
    raise NotFoundError(f"no image tagged {tag!r} in {archive}")


def _member(root: Path, name: Any, archive: Path) -> Path:
    cleaned, _ = clean_name(str(name or ""))
    path = root / (cleaned or "")
    if not cleaned or not path.is_file() or os.path.islink(path):
        raise FormatError(f"{archive}: {name!r} is missing from the archive")
    return path
