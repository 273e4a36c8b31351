"""``capsa exec --nv`` on a host with a real NVIDIA GPU (skipped elsewhere).

The image is the driverless sandbox of the other GPU tests: everything the
container needs of the driver comes from the host through --nv.  Nothing
points capsa at a fake tree here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa

pytestmark = pytest.mark.needs_gpu


@pytest.mark.parametrize("contain", [False, True], ids=["default", "contain"])
def test_nvidia_smi_and_cuda_run_inside(any_capsa: Capsa, gpu_sandbox: Path,
                                        contain: bool) -> None:
    flags = ["--nv", "--contain"] if contain else ["--nv"]
    result = any_capsa("exec", *flags, str(gpu_sandbox), "/bin/sh", "-c",
                       "nvidia-smi -L && /opt/probe/cuda-count && test -c /dev/nvidiactl")
    assert result.returncode == 0, str(result)
    assert "GPU 0:" in result.stdout
    assert "CUDA devices: " in result.stdout
