"""Fixtures for the build tests: the busybox test images (a SIF and a
sandbox, from support.images) and a busybox OCI image in the local registry."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ocibuild
from support.env import SCRATCH
from support.images import build_all
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)


@dataclass(frozen=True)
class BuildImages:
    sif: Path
    sandbox: Path
    layout: Path
    registry: Registry
    tricky_archive: Path      # oci-archive of support.ocibuild's tricky image

    def ref(self, name: str = "test/busybox:latest") -> str:
        return self.registry.ref(name)


def _archive(layout: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(layout.iterdir()):
            tar.add(entry, arcname=entry.name)
    dest.chmod(0o644)
    return dest


@pytest.fixture(scope="session")
def build_images(plain_registry: Registry) -> Iterator[BuildImages]:  # noqa: F811
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    base = Path(tempfile.mkdtemp(prefix="build-images-", dir=SCRATCH))
    os.chmod(base, 0o755)
    images = build_all(base / "img")
    layout = ocibuild.busybox_layout(base / "oci-busybox", "latest")
    for dirpath, _dirs, files in os.walk(layout):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    plain_registry.push_oci_layout(layout, "test/busybox:latest")
    tricky = _archive(ocibuild.tricky_layout(base / "oci-tricky", "latest"),
                      base / "tricky.tar")
    yield BuildImages(images["sif"], images["sandbox"], layout, plain_registry, tricky)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def build_fake_gpu() -> Iterator[object]:
    """The GPU tests' fake NVIDIA driver tree (gpu.fakedriver), for --nv builds."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the fake driver libraries")
    from gpu.fakedriver import build_fake_driver, open_up

    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="build-gpu-", dir=SCRATCH))
    try:
        driver = build_fake_driver(base)
        open_up(base)
        yield driver
    finally:
        shutil.rmtree(base, ignore_errors=True)
