"""Fixtures for the pull tests: the local registries (from support.registry)
and test images built once per session and pushed there."""

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
from support.registry import (  # noqa: F401  (fixtures)
    Registry,
    auth_registry,
    hostile_registry,
    plain_registry,
    token_registry,
)


@dataclass(frozen=True)
class Images:
    """Test images as OCI layouts (readable by every user) and in a registry."""

    root: Path
    registry: Registry

    def layout(self, name: str) -> Path:
        return self.root / name

    def ref(self, name: str) -> str:
        return self.registry.ref(name)


def _world_readable(path: Path) -> None:
    for dirpath, dirs, files in os.walk(path):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
        del dirs


@pytest.fixture(scope="session")
def images(plain_registry: Registry) -> Iterator[Images]:  # noqa: F811
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    root = Path(tempfile.mkdtemp(prefix="images-", dir=SCRATCH))
    ocibuild.busybox_layout(root / "busybox", "latest")
    ocibuild.tricky_layout(root / "tricky", "latest")
    ocibuild.multiarch_layout(root / "multiarch", "latest")
    for kind in ocibuild.HOSTILE_KINDS:
        ocibuild.hostile_layout(root / "hostile", kind)
    _world_readable(root)
    os.chmod(root, 0o755)
    plain_registry.push_oci_layout(root / "busybox", "test/busybox:latest")
    plain_registry.push_oci_layout(root / "tricky", "test/tricky:latest")
    plain_registry.push_oci_layout(root / "multiarch", "test/multiarch:latest")
    yield Images(root, plain_registry)
    shutil.rmtree(root, ignore_errors=True)
