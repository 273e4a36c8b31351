"""Fixtures of the GPU tests: the fake driver tree, built once per session.

No GPU is needed: see :mod:`gpu.fakedriver` for what the tree holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu.fakedriver import FakeDriver, build_fake_driver, build_gpu_sandbox, open_up
from support.env import SCRATCH


@pytest.fixture(scope="session")
def fake_driver() -> Iterator[FakeDriver]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the fake driver libraries")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    base = Path(tempfile.mkdtemp(prefix="gpu-", dir=SCRATCH))
    try:
        driver = build_fake_driver(base)
        open_up(base)
        yield driver
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def empty_root(tmp_path: Path) -> Path:
    """A host with no GPU at all: no devices, no programs, no data files."""
    (tmp_path / "dev").mkdir()
    return tmp_path


@pytest.fixture(scope="session")
def gpu_sandbox() -> Iterator[Path]:
    """A sandbox image without any driver: busybox, ld.so, libc, a dlopen probe."""
    if shutil.which("gcc") is None or shutil.which("busybox") is None:
        pytest.skip("gcc and busybox are needed to build the GPU test image")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="gpuimg-", dir=SCRATCH))
    try:
        root = build_gpu_sandbox(base)
        open_up(base)
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def gpu_squashfs(gpu_sandbox: Path) -> Iterator[Path]:
    """The sandbox as a bare squashfs image, without /usr/bin and
    /.singularity.d/libs: the runtime must make those mount points itself."""
    if shutil.which("mksquashfs") is None:
        pytest.skip("mksquashfs is needed for the squashfs GPU test image")
    base = Path(tempfile.mkdtemp(prefix="gpusqfs-", dir=SCRATCH))
    image = base / "gpu.sqfs"
    try:
        subprocess.run(["mksquashfs", str(gpu_sandbox), str(image), "-noappend", "-quiet",
                        "-no-progress", "-all-root", "-e", "usr/bin", ".singularity.d/libs"],
                       check=True, capture_output=True)
        os.chmod(base, 0o755)
        os.chmod(image, 0o644)
        yield image
    finally:
        shutil.rmtree(base, ignore_errors=True)
