"""Unit tests: /.singularity.d scripts, the content cache, squashfs options."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from capsa.content import ContentCache, atomic_file, default_cache_root, sif_cache_key
from capsa.digest import Descriptor, sha256_digest
from capsa.errors import ToolError, UsageError
from capsa.rootfs.singularity_d import docker_env_script, metadata_entries, runscript
from capsa.squashfs import SquashfsOptions, from_tar_stream, options_from_mksquashfs_args

# ---------------------------------------------------------------- runscript and env


def _run_script(tmp_path: Path, script: str, *args: str, env: dict[str, str] | None = None
                ) -> str:
    path = tmp_path / "script"
    path.write_text(script)
    return subprocess.run(["/bin/sh", str(path), *args], capture_output=True, text=True,
                          env=env or {"PATH": "/usr/bin:/bin"}, check=True).stdout


@pytest.mark.parametrize(("entrypoint", "cmd", "args", "expected"), [
    (["/bin/echo", "ep"], ["c1", "c 2"], [], "ep c1 c 2\n"),
    (["/bin/echo", "ep"], ["c1"], ["x y"], "ep x y\n"),
    ([], ["/bin/echo", "only cmd"], [], "only cmd\n"),
    ([], ["/bin/echo", "only cmd"], ["/bin/echo", "args"], "args\n"),
    (["/bin/echo"], [], ["it's"], "it's\n"),
])
def test_runscript(tmp_path: Path, entrypoint: list[str], cmd: list[str], args: list[str],
                   expected: str) -> None:
    script = runscript(entrypoint, cmd)
    assert _run_script(tmp_path, script, *args) == expected
    no_eval = {"PATH": "/usr/bin:/bin", "APPTAINER_NO_EVAL": "1"}
    assert _run_script(tmp_path, script, *args, env=no_eval) == expected


def test_runscript_no_eval_keeps_dollar(tmp_path: Path) -> None:
    script = runscript(["/bin/echo"], ["$HOME"])
    env = {"PATH": "/usr/bin:/bin", "HOME": "/h", "APPTAINER_NO_EVAL": "1"}
    assert _run_script(tmp_path, script, env=env) == "$HOME\n"
    assert _run_script(tmp_path, script, env={"PATH": "/bin", "HOME": "/h"}) == "$HOME\n"


def test_docker_env_host_wins_but_path(tmp_path: Path) -> None:
    script = docker_env_script(["PATH=/opt/bin:/bin", "A=image", "B=with \"quotes\" $x",
                                "EMPTY", "bad-name=1"])
    assert "bad-name" not in script
    check = script + 'echo "$PATH|$A|$B|$EMPTY"\n'
    out = _run_script(tmp_path, check, env={"PATH": "/host", "A": "host"})
    assert out == '/opt/bin:/bin|host|with "quotes" $x|\n'


def test_metadata_entries_modes() -> None:
    entries = {e.info.name: e for e in metadata_entries({"Labels": {"a": "b"}})}
    assert ".singularity.d/Singularity" not in entries
    assert entries[".singularity.d/runscript"].info.mode == 0o755
    assert entries[".singularity.d/labels.json"].data == b'{\n\t"a": "b"\n}'
    assert entries["etc/hosts"].data == b""
    assert all(e.info.uid == 0 for e in entries.values())
    built = {e.info.name: e for e in metadata_entries(
        {"Labels": {"org.label-schema.build-arch": "image's"}}, arch="arm64",
        deffile={"bootstrap": "docker", "from": "alpine"})}
    labels = json.loads(built[".singularity.d/labels.json"].data)
    assert labels["org.label-schema.build-arch"] == "image's"
    assert labels["org.label-schema.usage.singularity.deffile.from"] == "alpine"
    assert built[".singularity.d/Singularity"].data == b"bootstrap: docker\nfrom: alpine\n"


# ---------------------------------------------------------------- content cache


def test_cache_root_from_environment(tmp_path: Path) -> None:
    env = {"APPTAINER_CACHEDIR": str(tmp_path), "HOME": "/nowhere"}
    assert default_cache_root(env) == tmp_path / "cache"
    assert default_cache_root({"HOME": "/h"}) == Path("/h/.apptainer/cache")


def test_sif_cache_key_matches_apptainer_formula() -> None:
    import hashlib

    digest = "sha256:" + "ab" * 32
    assert sif_cache_key(digest, "amd64") == hashlib.sha256(
        ("ab" * 32 + "amd64").encode()).hexdigest()


def test_atomic_file_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "x"
    with pytest.raises(RuntimeError), atomic_file(target) as out:
        out.write(b"partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def _desc(data: bytes) -> Descriptor:
    return Descriptor("application/octet-stream", sha256_digest(data), len(data))


def test_blob_fetched_once_by_threads(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c")
    cache.ensure()
    data = os.urandom(100_000)
    calls = []

    def fetch(_d: Descriptor, out: BinaryIO) -> None:
        calls.append(1)
        out.write(data)

    threads = [threading.Thread(target=cache.get_blob, args=(_desc(data), fetch))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert cache.blob_path(_desc(data).digest).read_bytes() == data
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700


def _fetch_in_process(root: str, data: bytes, marker: str) -> None:
    cache = ContentCache(Path(root))

    def fetch(_d: Descriptor, out: BinaryIO) -> None:
        with open(marker, "a") as log:
            log.write("x")
        out.write(data)

    cache.get_blob(_desc(data), fetch)


def test_blob_fetched_once_by_processes(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c")
    cache.ensure()
    data = os.urandom(50_000)
    marker = tmp_path / "marker"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_fetch_in_process, args=(str(cache.root), data, str(marker)))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert marker.read_text() == "x"


def test_failed_fetch_leaves_no_blob(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c")
    cache.ensure()

    def broken(_d: Descriptor, out: BinaryIO) -> None:
        out.write(b"half")
        raise ToolError("connection reset")

    with pytest.raises(ToolError):
        cache.get_blob(_desc(b"whole blob"), broken)
    assert not cache.has_blob(_desc(b"whole blob"))
    assert not list((cache.root / "blob").rglob(".tmp-*"))


# ---------------------------------------------------------------- squashfs


def test_mksquashfs_args() -> None:
    assert options_from_mksquashfs_args("-comp gzip") == SquashfsOptions("gzip", 9)
    assert options_from_mksquashfs_args("-comp zstd -Xcompression-level 19 -b 1048576") == \
        SquashfsOptions("zstd", 19, 1048576)
    assert options_from_mksquashfs_args("-processors 2 -mem 1G").compressor == "zstd"
    with pytest.raises(UsageError):
        options_from_mksquashfs_args("-comp bogus")
    with pytest.raises(UsageError):
        options_from_mksquashfs_args("-comp")


def test_from_tar_stream_writes_squashfs(tmp_path: Path) -> None:
    def write(out: BinaryIO) -> str:
        with tarfile.open(fileobj=out, mode="w|") as tar:
            info = tarfile.TarInfo("hello")
            info.size = 2
            info.uid = 1234
            tar.addfile(info, io.BytesIO(b"hi"))
        return "done"

    dest = tmp_path / "fs.sqfs"
    assert from_tar_stream(dest, write) == "done"
    listing = subprocess.run(["unsquashfs", "-lln", str(dest)], capture_output=True,
                             text=True, check=True).stdout
    assert "1234/0" in listing


def test_from_tar_stream_error_removes_output(tmp_path: Path) -> None:
    def write(out: BinaryIO) -> None:
        out.write(b"\0" * 100)
        raise UsageError("producer failed")

    dest = tmp_path / "fs.sqfs"
    with pytest.raises(UsageError):
        from_tar_stream(dest, write)
    assert not dest.exists()


def test_from_tar_stream_garbage_is_tool_error(tmp_path: Path) -> None:
    dest = tmp_path / "fs.sqfs"
    with pytest.raises(ToolError):
        from_tar_stream(dest, lambda out: out.write(b"garbage" * 1000))
    assert not dest.exists()


# ---------------------------------------------------------------- CLI helpers


@pytest.mark.parametrize(("uri", "name"), [
    ("docker://alpine", "alpine_latest.sif"),
    ("docker://alpine:3.19", "alpine_3.19.sif"),
    ("docker://127.0.0.1:5000/lab/tool:v2", "tool_v2.sif"),
    ("oras://ghcr.io/org/img:1.0", "img_1.0.sif"),
    ("oci-archive:/data/my-image.tar", "my-image.sif"),
    ("docker-archive:/data/saved.tar", "saved.sif"),
    ("oci:/data/layout:v1", "layout.sif"),
])
def test_default_name(uri: str, name: str) -> None:
    from capsa.pulling import default_name

    assert default_name(uri) == name


def test_find_size() -> None:
    from capsa.cli.commands.cache import find_size

    assert find_size(0) == "0.00 KiB"
    assert find_size(174) == "0.17 KiB"
    assert find_size(37_318_000) == "35.59 MiB"
    assert find_size(3 << 30) == "3.00 GiB"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--arch", "arm64"], "linux/arm64"), (["--arch", "arm32v7"], "linux/arm/v7"),
    (["--arch", "amd64"], "linux/amd64"), (["--platform", "linux/arm/v6"], "linux/arm/v6"),
    (["--arch", "arm", "--arch-variant", "v5"], "linux/arm/v5"), ([], "None"),
])
def test_platform_flags(argv: list[str], expected: str) -> None:
    import argparse

    from capsa.cli.commands.pull import configure
    from capsa.pulling import platform_for

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args([*argv, "docker://x"])
    assert str(platform_for(args.platform, args.arch, args.arch_variant)) == expected
