"""Fixtures for the build tests: the busybox test images (a SIF and a
sandbox, from support.images) and a busybox OCI image in the local registry."""

from __future__ import annotations

import os
import shutil
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

    def ref(self, name: str = "test/busybox:latest") -> str:
        return self.registry.ref(name)


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
    yield BuildImages(images["sif"], images["sandbox"], layout, plain_registry)
    shutil.rmtree(base, ignore_errors=True)
