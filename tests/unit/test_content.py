"""The content cache: where it is, its keys, atomic writes, one fetch per blob."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from capsa.content import ContentCache, atomic_file, default_cache_root, sif_cache_key
from capsa.digest import Descriptor, sha256_digest
from capsa.errors import ToolError


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
