"""capsa.squashfs: mksquashfs options and squashfs images from a tar stream."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import BinaryIO

import pytest

from capsa.errors import ToolError, UsageError
from capsa.squashfs import SquashfsOptions, from_tar_stream, options_from_mksquashfs_args


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
