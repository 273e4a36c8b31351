"""--nvccli: the plan asked of nvidia-container-cli, proved with a fake one.

The fake records the arguments it was called with and prints a listing in
the real tool's form (one absolute path a line: device nodes, programs,
the driver's fully versioned library files, the persistenced socket).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capsa.errors import ToolError, UsageError
from capsa.runtime import gpu
from gpu.fakedriver import FakeDriver

CONTAIN_WARNING = ("When using nvidia-container-cli with --contain NVIDIA_VISIBLE_DEVICES "
                   "must be set or no GPUs will be available in container.")


def fake_cli(directory: Path, driver: FakeDriver) -> tuple[Path, Path]:
    """An nvidia-container-cli that logs its argv to a file, one argument a line."""
    record = directory / "argv"
    listing = "\n".join([
        "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidia1",
        driver.host("/usr/bin/nvidia-smi"),
        "/usr/bin/nvidia-cuda-mps-control",  # compute: kept by default
        str(driver.lib64 / "libEGL_nvidia.so.535.104.05"),  # graphics: not by default
        str(driver.lib64 / "libcuda.so.535.104.05"),
        str(driver.lib64 / "libnvidia-ml.so.535.104.05"),
        str(driver.lib32 / "libcuda.so.535.104.05"),  # --compat32 style entry: skipped
        "/run/nvidia-persistenced/socket",
    ])
    program = directory / "bin" / "nvidia-container-cli"
    program.parent.mkdir(parents=True)
    program.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\ncat <<EOF\n{listing}\nEOF\n')
    program.chmod(0o755)
    return program, record


@pytest.fixture
def cli(tmp_path: Path, fake_driver: FakeDriver) -> tuple[Path, Path]:
    return fake_cli(tmp_path, fake_driver)


def environ(cli: tuple[Path, Path], **extra: str) -> dict[str, str]:
    return {"PATH": f"{cli[0].parent}:/usr/bin:/bin", **extra}


def recorded(cli: tuple[Path, Path]) -> list[str]:
    return cli[1].read_text().splitlines()


def test_missing_nvidia_container_cli_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"^nvidia-container-cli not found in PATH: --nvccli"):
        gpu.gpu_plan("nvccli", contain=False, environ={"PATH": str(tmp_path)})


def test_default_is_every_gpu(cli: tuple[Path, Path], fake_driver: FakeDriver) -> None:
    plan = gpu.gpu_plan("nvccli", contain=False, environ=environ(cli))
    user = ["--user"] if os.geteuid() != 0 else []
    assert recorded(cli) == [*user, "list", "--binaries", "--libraries", "--ipcs",
                             "--device=all"]
    assert plan.env == (("NVIDIA_VISIBLE_DEVICES", "all"),)
    lib64 = fake_driver.lib64
    # the versioned files the CLI names, plus the soname links programs load
    assert set(plan.libraries) == {
        str(lib64 / "libcuda.so.535.104.05"), str(lib64 / "libcuda.so.1"),
        str(lib64 / "libcuda.so"), str(lib64 / "libnvidia-ml.so.535.104.05"),
        str(lib64 / "libnvidia-ml.so.1")}
    assert plan.binaries == (fake_driver.host("/usr/bin/nvidia-smi"),
                             "/usr/bin/nvidia-cuda-mps-control")
    assert plan.files == (("/run/nvidia-persistenced/socket",
                           "/run/nvidia-persistenced/socket"),)
    assert plan.devices == ()  # the whole /dev is there without --contain
    assert plan.warnings == ()


def test_contain_with_chosen_gpus(cli: tuple[Path, Path]) -> None:
    plan = gpu.gpu_plan("nvccli", contain=True, environ=environ(
        cli, NVIDIA_VISIBLE_DEVICES="1", NVIDIA_MIG_CONFIG_DEVICES="all",
        NVIDIA_DRIVER_CAPABILITIES="compute,utility"))
    assert recorded(cli)[-3:] == ["--ipcs", "--device=1", "--mig-config=all"]
    assert plan.devices == ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0",
                            "/dev/nvidia1")
    assert plan.env == ()
    assert plan.warnings == ()


def test_contain_without_visible_devices_warns_and_binds_no_gpu(
        cli: tuple[Path, Path]) -> None:
    plan = gpu.gpu_plan("nvccli", contain=True, environ=environ(cli))
    assert not any(arg.startswith("--device") for arg in recorded(cli))
    assert plan.devices == ("/dev/nvidiactl", "/dev/nvidia-uvm")
    assert plan.warnings == (CONTAIN_WARNING,)
    assert plan.env == ()


def test_unknown_driver_capability_is_refused(cli: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError, match="unknown NVIDIA_DRIVER_CAPABILITIES value: gaming"):
        gpu.gpu_plan("nvccli", contain=False,
                     environ=environ(cli, NVIDIA_DRIVER_CAPABILITIES="compute,gaming"))


def test_failing_cli_is_a_tool_error(tmp_path: Path) -> None:
    program = tmp_path / "nvidia-container-cli"
    program.write_text("#!/bin/sh\necho 'nvidia-container-cli: initialization error: "
                       "nvml error: driver not loaded' >&2\nexit 1\n")
    program.chmod(0o755)
    with pytest.raises(ToolError, match="driver not loaded"):
        gpu.gpu_plan("nvccli", contain=False, environ={"PATH": str(tmp_path)})


def test_request_as_root_and_as_user() -> None:
    args, _ = gpu.nvccli_request({}, contain=False, unprivileged=True)
    assert args[:2] == ["--user", "list"]
    args, _ = gpu.nvccli_request({"NVIDIA_VISIBLE_DEVICES": "GPU-1234"}, contain=True,
                                 unprivileged=False)
    assert args == ["list", "--binaries", "--libraries", "--ipcs", "--device=GPU-1234"]


def test_empty_listing_warns_like_nv() -> None:
    plan = gpu.plan_from_nvccli_listing("", contain=True, visible="all")
    assert plan.warnings == ("Could not find any nv files on this host!",
                             "Could not find any nv libraries on this host!")


def test_driver_capabilities_choose_the_files(cli: tuple[Path, Path],
                                              fake_driver: FakeDriver) -> None:
    """NVIDIA_DRIVER_CAPABILITIES (default compute,utility) as configure reads it."""
    def libs(value: str) -> list[str]:
        plan = gpu.gpu_plan("nvccli", contain=False,
                            environ=environ(cli, NVIDIA_DRIVER_CAPABILITIES=value))
        return sorted(os.path.basename(p) for p in (*plan.libraries, *plan.binaries))

    assert "libEGL_nvidia.so.0" not in libs("")
    assert libs("utility") == ["libnvidia-ml.so.1", "libnvidia-ml.so.535.104.05", "nvidia-smi"]
    graphics = libs("graphics")
    assert "libEGL_nvidia.so.0" in graphics and "libcuda.so.1" not in graphics
    every = libs("all")
    assert {"libEGL_nvidia.so.0", "libcuda.so.1", "nvidia-smi",
            "nvidia-cuda-mps-control"} <= set(every)


def test_capability_classes() -> None:
    default = gpu.NV_DEFAULT_CAPABILITIES
    assert gpu.capability_allows("/usr/lib/libcuda.so.535.1", default)
    assert gpu.capability_allows("/usr/bin/nvidia-smi", default)
    assert not gpu.capability_allows("/usr/lib/libnvidia-encode.so.535.1", default)
    assert gpu.capability_allows("/usr/lib/libnvidia-encode.so.535.1", ["video"])
    assert not gpu.capability_allows("/usr/lib/libGLX_nvidia.so.0", default)
    assert not gpu.capability_allows("/usr/lib/libGL.so.1", ["compute"])
    assert gpu.capability_allows("/usr/lib/libsomething-new.so.1", default)  # no class
