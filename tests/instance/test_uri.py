"""``instance start docker://...``: the image is pulled into a temporary SIF
that lives as long as the instance, and goes with it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.instance.conftest import Instances

from support import ocibuild
from support.env import SCRATCH
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)
from support.waiting import until

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="module")
def busybox_ref(plain_registry: Registry) -> Iterator[str]:  # noqa: F811
    SCRATCH.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="instance-oci-", dir=SCRATCH))
    try:
        ocibuild.busybox_layout(root / "busybox", "latest")
        for dirpath, _dirs, files in os.walk(root):
            os.chmod(dirpath, 0o755)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        plain_registry.push_oci_layout(root / "busybox", "instance/busybox:latest")
        yield plain_registry.ref("instance/busybox:latest")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_instance_from_a_registry(quick: Instances, busybox_ref: str) -> None:
    env = {"APPTAINER_CACHEDIR": str(quick.config / "cache")}
    started = quick("instance", "start", "--no-https", busybox_ref, "pulled", env=env)
    assert started.returncode == 0, str(started)
    assert len(quick.leftovers()) >= 1  # the temporary SIF (and the session)
    out = quick("exec", "instance://pulled", "echo", "from the registry")
    assert out.stdout == "from the registry\n", str(out)
    assert quick("instance", "stop", "pulled").returncode == 0
    assert until(lambda: quick.leftovers() == [])
