"""Real test images built with Python, written as OCI image layouts.

- :func:`busybox_layout`: Debian's static busybox with its applets as links.
- :func:`debian_layout`: ``debootstrap --variant=minbase bookworm`` from this
  machine's configured mirror, cached under ``/var/tmp/capsa-test-cache``
  (slow the first time; needs root).
- :func:`tricky_layout`: several layers that delete files and directories
  (plain and opaque whiteouts), hard links, symlinks, a FIFO, a setuid
  file, files owned by 1000 and 65534, an xattr, gzip/zstd/plain layers.
- :func:`multiarch_layout`: an index of amd64 and arm64 images.
- :func:`hostile_layer`: layers with ``..``, absolute names, escaping links,
  truncated gzip, non-tar data.

Each layout has ``index.json`` entries annotated with
``org.opencontainers.image.ref.name`` = tag, so ``oci:DIR:TAG`` and
``skopeo copy oci:DIR:TAG`` both find them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "gzip6": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "plain": "application/vnd.oci.image.layer.v1.tar",
}
CACHE = Path(os.environ.get("CAPSA_TEST_CACHE", "/var/tmp/capsa-test-cache"))
BUSYBOX = Path("/bin/busybox")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Member:
    """One tar entry: ``kind`` is file, dir, symlink, hardlink or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    xattrs: Mapping[str, str] = field(default_factory=dict)

    def info(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                     "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                     "fifo": tarfile.FIFOTYPE}[self.kind]
        info.mode = self.mode
        info.uid, info.gid = self.uid, self.gid
        info.linkname = self.link
        info.size = len(self.data) if self.kind == "file" else 0
        info.mtime = 1_700_000_000
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in self.xattrs.items()}
        return info


def tar_bytes(members: Iterable[Member]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            data = io.BytesIO(member.data) if member.kind == "file" else None
            tar.addfile(member.info(), data)
    return out.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if kind == "gzip6":  # what registries usually serve (docker's default level)
        return gzip.compress(data, compresslevel=6, mtime=0)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


@dataclass
class Layer:
    blob: bytes
    media_type: str
    diff_id: str


def layer(members: Iterable[Member] | bytes, kind: str = "gzip") -> Layer:
    raw = members if isinstance(members, bytes) else tar_bytes(members)
    return Layer(compress(raw, kind), LAYER_TYPES[kind], sha256(raw))


@dataclass
class Image:
    manifest: bytes
    config: bytes
    layers: list[Layer]
    arch: str
    variant: str = ""

    def descriptor(self) -> dict[str, Any]:
        platform = {"architecture": self.arch, "os": "linux"}
        if self.variant:
            platform["variant"] = self.variant
        return {"mediaType": OCI_MANIFEST, "digest": sha256(self.manifest),
                "size": len(self.manifest), "platform": platform}


def image(layers: Sequence[Layer], *, arch: str = "amd64", variant: str = "",
          config: Mapping[str, Any] | None = None) -> Image:
    doc: dict[str, Any] = {
        "architecture": arch, "os": "linux",
        "config": dict(config or {"Env": ["PATH=/bin:/usr/bin"], "Cmd": ["/bin/sh"]}),
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"capsa test layer {i}"}
                    for i in range(len(layers))],
    }
    if variant:
        doc["variant"] = variant
    config_bytes = json.dumps(doc).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config_bytes),
                   "size": len(config_bytes)},
        "layers": [{"mediaType": lay.media_type, "digest": sha256(lay.blob),
                    "size": len(lay.blob)} for lay in layers],
    }
    return Image(json.dumps(manifest).encode(), config_bytes, list(layers), arch, variant)


def _blob(layout: Path, data: bytes) -> None:
    path = layout / "blobs" / "sha256" / sha256(data).split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)


def write_layout(layout: Path, tag: str, images: Sequence[Image]) -> Path:
    """Write *images* (one: a manifest; several: an index) tagged *tag*."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for img in images:
        for lay in img.layers:
            _blob(layout, lay.blob)
        _blob(layout, img.config)
        _blob(layout, img.manifest)
    if len(images) == 1:
        top = images[0].descriptor()
        del top["platform"]
    else:
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [i.descriptor() for i in images]}).encode()
        _blob(layout, index)
        top = {"mediaType": OCI_INDEX, "digest": sha256(index), "size": len(index)}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index_path = layout / "index.json"
    entries = []
    if index_path.exists():
        entries = [m for m in json.loads(index_path.read_text())["manifests"]
                   if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": [*entries, top]}))
    return layout


# ---------------------------------------------------------------- images


def busybox_members() -> list[Member]:
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    members = [Member("bin", "dir", mode=0o755), Member("etc", "dir", mode=0o755),
               Member("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755)]
    members += [Member(f"bin/{a}", "symlink", link="busybox", mode=0o777)
                for a in sorted(applets) if a != "busybox"]
    members += [
        Member("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
               b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        Member("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n"),
    ]
    return members


def busybox_image(arch: str = "amd64", kind: str = "gzip") -> Image:
    return image([layer(busybox_members(), kind)], arch=arch, config={
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "GREETING=hello world"],
        "Cmd": ["sh"], "Labels": {"org.capsa.test": "busybox"},
    })


def busybox_layout(layout: Path, tag: str = "latest") -> Path:
    return write_layout(layout, tag, [busybox_image()])


def tricky_layers() -> list[Layer]:
    """Layer 1 lays a tree; 2 deletes and replaces parts; 3 makes a dir opaque."""
    base = [
        Member("data", "dir", mode=0o755),
        Member("data/keep.txt", data=b"keep\n"),
        Member("data/gone.txt", data=b"delete me\n"),
        Member("data/olddir", "dir", mode=0o755),
        Member("data/olddir/inner.txt", data=b"inner\n"),
        Member("data/opaque", "dir", mode=0o750, uid=1000, gid=1000),
        Member("data/opaque/lower.txt", data=b"lower\n"),
        Member("data/replaced", "dir", mode=0o755),
        Member("data/replaced/child.txt", data=b"child\n"),
        Member("data/user1000.txt", data=b"u1000\n", uid=1000, gid=1000),
        Member("data/nobody.txt", data=b"nobody\n", uid=65534, gid=65534),
        Member("data/setuid", data=b"#!/bin/sh\n", mode=0o4755),
        Member("data/fifo", "fifo", mode=0o644),
        Member("data/link-abs", "symlink", link="/data/keep.txt", mode=0o777),
        Member("data/link-rel", "symlink", link="keep.txt", mode=0o777),
        Member("data/xattr.txt", data=b"x\n", xattrs={"user.capsa": "yes"}),
        Member("data/hard-a", data=b"shared inode\n"),
        Member("data/hard-b", "hardlink", link="data/hard-a"),
    ]
    upper = [
        Member("data/.wh.gone.txt"),
        Member("data/.wh.olddir"),
        Member("data/replaced", data=b"now a file\n"),
        Member("data/new.txt", data=b"new\n", uid=1000, gid=100),
    ]
    top = [
        Member("data/opaque", "dir", mode=0o750, uid=1000, gid=1000),
        Member("data/opaque/.wh..wh..opq"),
        Member("data/opaque/upper.txt", data=b"upper\n"),
        Member("data/hard-c", "hardlink", link="data/hard-a"),
    ]
    return [layer(base, "gzip"), layer(upper, "zstd"), layer(top, "plain")]


def tricky_image() -> Image:
    return image([layer(busybox_members()), *tricky_layers()], config={
        "Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/bin/echo", "from entrypoint"],
        "Cmd": ["default arg"], "Labels": {"kind": "tricky"},
    })


def tricky_layout(layout: Path, tag: str = "latest") -> Path:
    return write_layout(layout, tag, [tricky_image()])


def multiarch_layout(layout: Path, tag: str = "latest") -> Path:
    arm = image([layer([Member("arch.txt", data=b"arm64\n")])], arch="arm64", variant="v8")
    amd = image([layer([*busybox_members(), Member("arch.txt", data=b"amd64\n")])])
    return write_layout(layout, tag, [amd, arm])


HOSTILE_KINDS = ("dotdot", "absolute", "symlink-escape", "hardlink-escape",
                 "truncated-gzip", "not-tar", "through-symlink")


def hostile_layer(kind: str) -> Layer:
    ok = Member("ok.txt", data=b"fine\n")
    if kind == "dotdot":
        return layer([ok, Member("../../escaped.txt", data=b"evil\n"),
                      Member("a/../../up.txt", data=b"evil\n")])
    if kind == "absolute":
        return layer([ok, Member("/abs/evil.txt", data=b"absolute\n")])
    if kind == "symlink-escape":
        return layer([ok, Member("d", "dir", mode=0o755),
                      Member("d/out", "symlink", link="../../../../etc/shadow", mode=0o777)])
    if kind == "hardlink-escape":
        return layer([ok, Member("h", "hardlink", link="../../etc/passwd")])
    if kind == "through-symlink":
        return layer([ok, Member("etc2", "symlink", link="/etc", mode=0o777),
                      Member("etc2/evil", data=b"through\n")])
    if kind == "truncated-gzip":
        full = layer([ok, Member("big", data=os.urandom(200_000))])
        return Layer(full.blob[: len(full.blob) // 2], full.media_type, full.diff_id)
    if kind == "not-tar":
        data = b"this is not a tar archive at all\n" * 40
        return Layer(gzip.compress(data), LAYER_TYPES["gzip"], sha256(data))
    raise ValueError(kind)


def hostile_layout(layout: Path, kind: str) -> Path:
    return write_layout(layout, kind, [image([layer(busybox_members()), hostile_layer(kind)])])


# ---------------------------------------------------------------- debian


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (never a hard-coded host)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        stanza_uri = None
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                stanza_uri = line.split(":", 1)[1].split()[0]
            if line.startswith("Suites:") and stanza_uri and "bookworm" in line.split():
                return stanza_uri
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                return words[1] if not words[1].startswith("[") else words[2]
    raise RuntimeError("no Debian bookworm mirror configured in apt's sources")


def debian_rootfs_tar(variant_packages: Sequence[str] = ()) -> Path:
    """A tar of a debootstrapped bookworm, built once per machine (needs root)."""
    suffix = "-" + "-".join(variant_packages) if variant_packages else ""
    tar_path = CACHE / f"debian-bookworm{suffix}.tar"
    if tar_path.exists():
        return tar_path
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / f"debian-root{suffix}.tmp"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    argv = ["debootstrap", "--variant=minbase"]
    if variant_packages:
        argv.append("--include=" + ",".join(variant_packages))
    subprocess.run([*argv, "bookworm", str(root), apt_mirror()], check=True,
                   capture_output=True)
    tmp = tar_path.with_suffix(".tmp")
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "-cf", str(tmp),
                    "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "."],
                   check=True)
    os.rename(tmp, tar_path)
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return tar_path


def is_apt_archive(name: str) -> bool:
    """Downloaded .debs debootstrap leaves behind (images clean them)."""
    return "var/cache/apt/archives/" in name and name.endswith(".deb")


def split_tar(tar_path: Path, parts: int) -> list[bytes]:
    """The members of *tar_path* spread over *parts* layer tars by size
    (hard links go with their target), without apt's downloaded .debs."""
    outs = [io.BytesIO() for _ in range(parts)]
    writers = [tarfile.open(fileobj=o, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
               for o in outs]
    with tarfile.open(tar_path) as src:
        members = [m for m in src.getmembers() if not is_apt_archive(m.name)]
        total = sum(m.size for m in members) or 1
        done = 0
        for member in members:
            index = min(parts - 1, done * parts // total)
            data = src.extractfile(member) if member.isreg() else None
            if member.islnk():
                index = _link_layer.get(member.linkname, index)
            writers[index].addfile(member, data)
            if member.isreg():
                _link_layer[member.name] = index
            done += member.size
    for writer in writers:
        writer.close()
    _link_layer.clear()
    return [o.getvalue() for o in outs]


_link_layer: dict[str, int] = {}


def debian_layout(layout: Path, tag: str = "bookworm", parts: int = 1,
                  packages: Sequence[str] = (), kind: str = "gzip") -> Path:
    tar_path = debian_rootfs_tar(packages)
    layers = [layer(raw, kind) for raw in split_tar(tar_path, parts)]
    return write_layout(layout, tag, [image(layers, config={
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["bash"]})])


# ---------------------------------------------------------------- checking SIFs


def partition_offset(sif: Path) -> int:
    from capsa.sif import SifImage

    with SifImage.open(sif) as image:
        return image.primary_partition().offset


def sif_listing(sif: Path) -> dict[str, tuple[str, str]]:
    """``path -> (mode string, "uid/gid")`` of the SIF's root filesystem."""
    out = subprocess.run(["unsquashfs", "-lln", "-o", str(partition_offset(sif)), str(sif)],
                         capture_output=True, text=True, check=True).stdout
    listing: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) < 6 or not words[-1].startswith("squashfs-root"):
            if "->" in words and words[words.index("->") - 1].startswith("squashfs-root"):
                name = words[words.index("->") - 1]
                listing[name[len("squashfs-root"):] or "/"] = (words[0], words[1])
            continue
        listing[words[-1][len("squashfs-root"):] or "/"] = (words[0], words[1])
    return listing


def sif_cat(sif: Path, path: str) -> bytes:
    return subprocess.run(["unsquashfs", "-o", str(partition_offset(sif)), "-cat", str(sif),
                           path.lstrip("/")], capture_output=True, check=True).stdout
