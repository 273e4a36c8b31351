"""The layer merger: whiteouts, ordering, hostile names, compression."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from capsa import report
from capsa.errors import DigestMismatchError, FormatError
from capsa.rootfs.compression import Compression, detect_compression
from capsa.rootfs.layers import (
    LayerFile,
    SyntheticEntry,
    clean_name,
    confine_symlink,
    merge_layers,
)
from support.ocibuild import Member, hostile_layer, layer, sha256, tar_bytes, tricky_layers


def _files(tmp_path: Path, blobs: list[bytes]) -> list[LayerFile]:
    files = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"layer{i}"
        path.write_bytes(blob)
        files.append(LayerFile(path, sha256(blob), len(blob)))
    return files


def _merged(tmp_path: Path, blobs: list[bytes], **kw: list[SyntheticEntry]
            ) -> dict[str, tarfile.TarInfo]:
    out = io.BytesIO()
    merge_layers(out, _files(tmp_path, blobs), **kw)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert len(names) == len(set(names)), "a path was written twice"
    return {m.name: m for m in members}


def test_tricky_layers_merge(tmp_path: Path) -> None:
    merged = _merged(tmp_path, [lay.blob for lay in tricky_layers()])
    assert "data/gone.txt" not in merged
    assert "data/olddir" not in merged and "data/olddir/inner.txt" not in merged
    assert "data/opaque/lower.txt" not in merged
    assert merged["data/opaque/upper.txt"].isreg()
    assert merged["data/replaced"].isreg()
    assert "data/replaced/child.txt" not in merged
    assert merged["data/nobody.txt"].uid == 65534
    assert merged["data/setuid"].mode == 0o4755
    assert merged["data/fifo"].isfifo()
    assert merged["data/xattr.txt"].pax_headers["SCHILY.xattr.user.capsa"] == "yes"
    assert merged["data/hard-b"].islnk() and merged["data/hard-b"].linkname == "data/hard-a"
    assert merged["data/hard-c"].islnk()
    assert not any(".wh." in name for name in merged)


def test_hard_links_come_after_their_target(tmp_path: Path) -> None:
    out = io.BytesIO()
    merge_layers(out, _files(tmp_path, [lay.blob for lay in tricky_layers()]))
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        names = [m.name for m in tar]
    assert names.index("data/hard-a") < names.index("data/hard-b")
    assert names.index("data/hard-a") < names.index("data/hard-c")


def test_upper_layer_wins_and_lower_dir_keeps_attributes(tmp_path: Path) -> None:
    lower = layer([Member("usr", "dir", mode=0o700, uid=7), Member("usr/a", data=b"old")])
    upper = layer([Member("usr/a", data=b"new"), Member("usr/b/c", data=b"c")])
    merged = _merged(tmp_path, [lower.blob, upper.blob])
    assert merged["usr"].mode == 0o700 and merged["usr"].uid == 7
    assert merged["usr/a"].size == 3


def test_metadata_overrides_and_base_fills(tmp_path: Path) -> None:
    img = layer([Member("etc", "dir", mode=0o711), Member("etc/hosts", data=b"1.2.3.4 x\n"),
                 Member("tmp", "dir", mode=0o1777)])
    top = [SyntheticEntry(Member("etc/hosts").info())]
    base = [SyntheticEntry(Member("tmp", "dir", mode=0o755).info()),
            SyntheticEntry(Member("proc", "dir", mode=0o755).info())]
    merged = _merged(tmp_path, [img.blob], top=top, base=base)
    assert merged["etc/hosts"].size == 0
    assert merged["etc"].mode == 0o711
    assert merged["tmp"].mode == 0o1777
    assert merged["proc"].isdir()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "plain"])
def test_compressions(tmp_path: Path, kind: str) -> None:
    lay = layer([Member("f", data=b"data")], kind)
    assert detect_compression(lay.blob[:4]) == {"gzip": Compression.GZIP, "zstd":
                                                Compression.ZSTD,
                                                "plain": Compression.PLAIN}[kind]
    assert _merged(tmp_path, [lay.blob])["f"].size == 4


def test_empty_layer(tmp_path: Path) -> None:
    merged = _merged(tmp_path, [b"", layer([Member("f", data=b"x")]).blob])
    assert "f" in merged


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-escape", "hardlink-escape",
                                  "through-symlink"])
def test_hostile_entries_are_confined_and_reported(tmp_path: Path, kind: str,
                                                   reports: list[tuple[int, str, str]]) -> None:
    merged = _merged(tmp_path, [hostile_layer(kind).blob])
    assert "ok.txt" in merged
    assert [r for r in reports if r[0] == report.WARNING], "a repair must be reported"
    assert not any(name.startswith("/") or ".." in name.split("/") for name in merged)
    if kind == "absolute":
        assert "abs/evil.txt" in merged
    if kind == "symlink-escape":
        assert merged["d/out"].linkname == "/etc/shadow"
    if kind == "hardlink-escape":
        assert "h" not in merged
    if kind == "through-symlink":
        assert "etc2/evil" not in merged


@pytest.mark.parametrize("kind", ["truncated-gzip", "not-tar"])
def test_broken_layers_raise_format_error(tmp_path: Path, kind: str) -> None:
    with pytest.raises(FormatError):
        merge_layers(io.BytesIO(), _files(tmp_path, [hostile_layer(kind).blob]))


def test_digest_checked_while_reading(tmp_path: Path) -> None:
    blob = layer([Member("f", data=b"x")]).blob
    path = tmp_path / "blob"
    path.write_bytes(blob)
    wrong = LayerFile(path, sha256(b"other"), len(blob))
    with pytest.raises(DigestMismatchError):
        merge_layers(io.BytesIO(), [wrong])


@pytest.mark.parametrize(("name", "expected"), [
    ("a/b", ("a/b", False)), ("./a//b/", ("a/b", False)), ("/abs", ("abs", True)),
    ("a/../b", ("b", True)), ("../x", (None, True)), ("a/../../x", (None, True)),
    (".", ("", False)),
])
def test_clean_name(name: str, expected: tuple[str | None, bool]) -> None:
    assert clean_name(name) == expected


@pytest.mark.parametrize(("path", "target", "expected"), [
    ("a/l", "../b", None), ("a/l", "../../etc/x", "/etc/x"), ("l", "/abs", None),
    ("l", "../x", "/x"), ("a/b/l", "../../c", None),
])
def test_confine_symlink(path: str, target: str, expected: str | None) -> None:
    assert confine_symlink(path, target) == expected


def test_tar_bytes_roundtrip() -> None:
    raw = tar_bytes([Member("x", data=b"1")])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["x"]


def test_upper_layer_writes_through_lower_directory_symlink(tmp_path: Path) -> None:
    """Merged /usr: ``bin -> usr/bin`` below, ``bin/tool`` above (as containerd
    resolves it: the file lands in usr/bin and /bin stays a link)."""
    from capsa.rootfs.layers import RedirectNeeded

    below = layer([Member("usr/bin", "dir", mode=0o755), Member("usr/bin/sh", data=b"sh"),
                   Member("bin", "symlink", link="usr/bin", mode=0o777),
                   Member("old", "dir", mode=0o755), Member("old/gone", data=b"hidden")])
    middle = layer([Member("old", "symlink", link="/usr/bin", mode=0o777)])
    above = layer([Member("bin/tool", data=b"tool"), Member("bin/hl", "hardlink",
                                                           link="bin/tool")])
    blobs = [below.blob, middle.blob, above.blob]
    with pytest.raises(RedirectNeeded) as caught:
        merge_layers(io.BytesIO(), _files(tmp_path, blobs))
    assert caught.value.redirects == {"bin": ("usr/bin", 0)}
    out = io.BytesIO()
    merge_layers(out, _files(tmp_path, blobs), redirects=caught.value.redirects)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        merged = {m.name: m for m in tar}
    assert merged["bin"].issym() and merged["bin"].linkname == "usr/bin"
    assert "usr/bin/tool" in merged and "bin/tool" not in merged
    assert merged["usr/bin/hl"].linkname == "usr/bin/tool"
    assert "usr/bin/sh" in merged
    assert merged["old"].issym() and "old/gone" not in merged


def test_long_and_non_utf8_names_survive(tmp_path: Path) -> None:
    long_dir = "d" * 120
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for name in (f"{long_dir}/{'f' * 150}", "caf\udce9.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("l")
        link.type = tarfile.SYMTYPE
        link.linkname = "/" + "t" * 200
        tar.addfile(link)
    merged = _merged(tmp_path, [raw.getvalue()])
    assert f"{long_dir}/{'f' * 150}" in merged
    assert "caf\udce9.txt" in merged
    assert merged["l"].linkname == "/" + "t" * 200
