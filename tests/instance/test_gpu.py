"""``instance start --nv``: the fake NVIDIA driver of :mod:`gpu.fakedriver`
is bound into the instance as ``exec --nv`` binds it (no GPU needed)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.instance.conftest import Instances

from gpu.fakedriver import FakeDriver, build_fake_driver, build_gpu_sandbox, open_up
from support.env import SCRATCH

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="module")
def driver_and_image() -> Iterator[tuple[FakeDriver, Path]]:
    if shutil.which("gcc") is None or shutil.which("busybox") is None:
        pytest.skip("gcc and busybox are needed for the fake driver and its image")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="instance-gpu-", dir=SCRATCH))
    try:
        driver = build_fake_driver(base / "driver")
        image = build_gpu_sandbox(base / "image")
        open_up(base)
        os.chmod(base, 0o755)
        yield driver, image
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_instance_start_nv(quick: Instances,
                           driver_and_image: tuple[FakeDriver, Path]) -> None:
    driver, image = driver_and_image
    env = driver.environ()
    started = quick("instance", "start", "--nv", str(image), "gpu", env=env)
    assert started.returncode == 0, str(started)
    probe = quick("exec", "instance://gpu", "/bin/sh", "-c",
                  "ls /.singularity.d/libs; nvidia-smi -L; /opt/probe/cuda-probe", env=env)
    assert probe.returncode == 0, str(probe)
    lines = probe.stdout.splitlines()
    assert "libcuda.so.1" in lines
    assert "fake nvidia-smi -L" in lines
    assert lines[-1] == "driver answered 42"
    assert quick("instance", "stop", "gpu").returncode == 0
