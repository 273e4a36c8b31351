"""``capsa exec --nv/--rocm/--nvccli``: exactly what is bound where.

No GPU is lent to these tests: the host is the fake driver tree of
:mod:`gpu.fakedriver`, shown to capsa through the site's settings (the
test entry point of :mod:`support.site`): ``gpu_root`` (devices, programs,
data files) and ``ldconfig`` (a program printing the fake linker cache).
The image is a sandbox with no driver of its own; a probe inside it
``dlopen``s ``libcuda.so.1`` by soname, as CUDA programs do.  Every test
runs as root and as the unprivileged test user.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from gpu.fakedriver import FakeDriver
from support.cli import Capsa, Result

pytestmark = pytest.mark.skipif(
    shutil.which("busybox") is None, reason="busybox is needed for the GPU test image")

NV_LIBS = ["libEGL_nvidia.so.0", "libcuda.so", "libcuda.so.1", "libnvidia-ml.so.1",
           "libnvidia-ptxjitcompiler.so.1"]
NO_NV_FILES = "WARNING: Could not find any nv files on this host!"
NO_NV_LIBS = "WARNING: Could not find any nv libraries on this host!"


def run_in(capsa: Capsa, image: Path, script: str, *flags: str,
           env: Mapping[str, str] | None = None) -> Result:
    return capsa("exec", *flags, str(image), "/bin/sh", "-c", script, env=env)


def lines(result: Result) -> list[str]:
    assert result.returncode == 0, str(result)
    return result.stdout.splitlines()


def test_nv_binds_the_driver_libraries(any_capsa: Capsa, fake_driver: FakeDriver,
                                       gpu_sandbox: Path) -> None:
    result = run_in(any_capsa, gpu_sandbox, "ls /.singularity.d/libs", "--nv",
                    env=fake_driver.environ())
    # the 64-bit libraries of nvliblist.conf, by the names the cache gives:
    # no 32-bit libcuda, no libfakez, no ROCm library
    assert sorted(lines(result)) == NV_LIBS
    assert NO_NV_LIBS not in result.stderr


def test_nv_library_loads_by_soname(any_capsa: Capsa, fake_driver: FakeDriver,
                                    gpu_sandbox: Path) -> None:
    script = ('echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; '
              "od -An -tx1 -j4 -N1 /.singularity.d/libs/libcuda.so.1; "
              "/opt/probe/cuda-probe")
    out = lines(run_in(any_capsa, gpu_sandbox, script, "--nv", env=fake_driver.environ()))
    assert out[0].startswith("LD_LIBRARY_PATH=")
    assert out[0].endswith("/.singularity.d/libs")
    assert out[1].strip() == "02"  # ELFCLASS64
    assert out[2] == "driver answered 42"


def test_nv_binds_the_driver_programs(any_capsa: Capsa, fake_driver: FakeDriver,
                                      gpu_sandbox: Path) -> None:
    script = "command -v nvidia-smi; nvidia-smi -L; ls /usr/bin"
    out = lines(run_in(any_capsa, gpu_sandbox, script, "--nv", env=fake_driver.environ()))
    assert out[0] == "/usr/bin/nvidia-smi"
    assert out[1] == "fake nvidia-smi -L"
    assert sorted(out[2:]) == ["nvidia-debugdump", "nvidia-smi"]


def test_nv_binds_the_driver_data_files(any_capsa: Capsa, fake_driver: FakeDriver,
                                        gpu_sandbox: Path) -> None:
    paths = ["/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
             "/usr/share/vulkan/icd.d/nvidia_icd.json", "/etc/OpenCL/vendors/nvidia.icd",
             "/usr/share/nvidia/nvoptix.bin", "/var/run/nvidia-persistenced/socket"]
    script = "; ".join(f"test -e {p} && echo {p}" for p in paths)
    out = lines(run_in(any_capsa, gpu_sandbox, script, "--nv", env=fake_driver.environ()))
    assert out == paths


@pytest.mark.parametrize("contain", [False, True], ids=["default", "contain"])
def test_nv_devices(any_capsa: Capsa, fake_driver: FakeDriver, gpu_sandbox: Path,
                    contain: bool) -> None:
    flags = ["--nv", "--contain"] if contain else ["--nv"]
    kind = "-c" if fake_driver.real_nodes else "-e"
    nodes = ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm",
             "/dev/nvidia-modeset", "/dev/nvidia-caps/nvidia-cap1"]
    script = "; ".join(f"test {kind} {n} && echo {n}" for n in nodes) + "; true"
    out = lines(run_in(any_capsa, gpu_sandbox, script, *flags, env=fake_driver.environ()))
    # Under --contain the minimal /dev gets every NVIDIA node; without it
    # the host's own /dev is there, and this host has no GPU.
    assert out == (nodes if contain else [])


def test_no_gpu_is_a_warning_not_a_failure(any_capsa: Capsa, fake_driver: FakeDriver,
                                           gpu_sandbox: Path, scratch: Path) -> None:
    empty = scratch / "nogpu"
    (empty / "dev").mkdir(parents=True)
    quiet = scratch / "ldconfig"
    quiet.write_text("#!/bin/sh\necho '0 libs found in cache'\n")
    quiet.chmod(0o755)
    env = fake_driver.environ(site={"gpu_root": str(empty), "ldconfig": str(quiet)})
    result = run_in(any_capsa, gpu_sandbox, "ls /.singularity.d/libs; echo ran", "--nv",
                    "--contain", env=env)
    assert lines(result) == ["ran"]
    assert NO_NV_FILES in result.stderr
    assert NO_NV_LIBS in result.stderr


def test_cuda_visible_devices_reaches_the_container(any_capsa: Capsa, fake_driver: FakeDriver,
                                                    gpu_sandbox: Path) -> None:
    script = 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"'
    host = run_in(any_capsa, gpu_sandbox, script, "--nv",
                  env=fake_driver.environ(CUDA_VISIBLE_DEVICES="1"))
    assert lines(host) == ["CUDA_VISIBLE_DEVICES=1"]
    forced = run_in(any_capsa, gpu_sandbox, script, "--nv", env=fake_driver.environ(
        CUDA_VISIBLE_DEVICES="1", APPTAINERENV_CUDA_VISIBLE_DEVICES="0"))
    assert lines(forced) == ["CUDA_VISIBLE_DEVICES=0"]
    # --cleanenv drops host variables, this one too; the injected one stays
    clean = run_in(any_capsa, gpu_sandbox, script, "--nv", "--cleanenv",
                   env=fake_driver.environ(CUDA_VISIBLE_DEVICES="1"))
    assert lines(clean) == ["CUDA_VISIBLE_DEVICES="]
    clean = run_in(any_capsa, gpu_sandbox, script, "--nv", "--cleanenv", env=fake_driver.environ(
        CUDA_VISIBLE_DEVICES="1", APPTAINERENV_CUDA_VISIBLE_DEVICES="0"))
    assert lines(clean) == ["CUDA_VISIBLE_DEVICES=0"]


def test_rocm_binds_libraries_and_programs(any_capsa: Capsa, fake_driver: FakeDriver,
                                           gpu_sandbox: Path) -> None:
    script = "ls /.singularity.d/libs; command -v rocm-smi; rocm-smi"
    out = lines(run_in(any_capsa, gpu_sandbox, script, "--rocm", env=fake_driver.environ()))
    assert out == ["libhsa-runtime64.so.1", "/usr/bin/rocm-smi", "fake rocm-smi"]


def test_rocm_devices_under_contain(any_capsa: Capsa, fake_driver: FakeDriver,
                                    gpu_sandbox: Path) -> None:
    kind = "-c" if fake_driver.real_nodes else "-e"
    script = "; ".join(f"test {kind} {n} && echo {n}"
                       for n in ("/dev/kfd", "/dev/dri/card0", "/dev/dri/renderD128"))
    out = lines(run_in(any_capsa, gpu_sandbox, script + "; true", "--rocm", "--contain",
                       env=fake_driver.environ()))
    assert out == ["/dev/kfd", "/dev/dri/card0", "/dev/dri/renderD128"]


def test_nv_and_rocm_together(any_capsa: Capsa, fake_driver: FakeDriver,
                              gpu_sandbox: Path) -> None:
    out = lines(run_in(any_capsa, gpu_sandbox, "ls /.singularity.d/libs", "--nv", "--rocm",
                       env=fake_driver.environ()))
    assert sorted(out) == sorted([*NV_LIBS, "libhsa-runtime64.so.1"])


def test_nvccli_without_the_tool_is_fatal(any_capsa: Capsa, fake_driver: FakeDriver,
                                          gpu_sandbox: Path) -> None:
    result = run_in(any_capsa, gpu_sandbox, "echo never", "--nvccli",
                    env=fake_driver.environ())
    assert result.returncode == 255, str(result)
    assert "never" not in result.stdout
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL:")]
    assert len(fatal) == 1 and "nvidia-container-cli" in fatal[0], str(result)
    assert "Traceback" not in result.stderr


def test_nvccli_binds_what_the_tool_lists(any_capsa: Capsa, fake_driver: FakeDriver,
                                          gpu_sandbox: Path, scratch: Path) -> None:
    tool = scratch / "bin" / "nvidia-container-cli"
    tool.parent.mkdir()
    listing = [fake_driver.host("/usr/bin/nvidia-smi"),
               str(fake_driver.lib64 / "libcuda.so.535.104.05")]
    tool.write_text("#!/bin/sh\n" + "".join(f"echo {p}\n" for p in listing))
    tool.chmod(0o755)
    env = fake_driver.environ(PATH=f"{tool.parent}:/usr/bin:/bin")
    script = 'ls /.singularity.d/libs; echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"'
    result = run_in(any_capsa, gpu_sandbox, script, "--nvccli", env=env)
    assert lines(result) == ["libcuda.so", "libcuda.so.1", "libcuda.so.535.104.05",
                             "NVIDIA_VISIBLE_DEVICES=all"]
    assert ("INFO:    Setting 'NVIDIA_VISIBLE_DEVICES=all' to emulate legacy GPU binding."
            in result.stderr.splitlines())


@pytest.mark.parametrize("action", ["run", "shell"])
def test_nv_with_run_and_shell(any_capsa: Capsa, fake_driver: FakeDriver, gpu_sandbox: Path,
                               action: str) -> None:
    if action == "run":  # the sandbox's runscript execs its arguments
        result = any_capsa("run", "--nv", str(gpu_sandbox), "/opt/probe/cuda-probe",
                           env=fake_driver.environ())
    else:
        result = any_capsa("shell", "--nv", str(gpu_sandbox), input="/opt/probe/cuda-probe\n",
                           env=fake_driver.environ())
    assert "driver answered 42" in lines(result)


@pytest.mark.parametrize("fuse", ["default", "nofuse"])
def test_nv_in_a_squashfs_image(any_capsa: Capsa, fake_driver: FakeDriver, gpu_squashfs: Path,
                                fuse: str) -> None:
    """A read-only image lacking /usr/bin and /.singularity.d/libs still gets them."""
    env = fake_driver.environ(site={"fuse": fuse != "nofuse"})
    script = "ls /.singularity.d/libs; command -v nvidia-smi; /opt/probe/cuda-probe"
    out = lines(run_in(any_capsa, gpu_squashfs, script, "--nv", env=env))
    assert out == [*NV_LIBS, "/usr/bin/nvidia-smi", "driver answered 42"]


@pytest.mark.parametrize("variable", ["APPTAINER_NV", "SINGULARITY_NV", "APPTAINER_ROCM"])
def test_gpu_flags_from_the_environment(any_capsa: Capsa, fake_driver: FakeDriver,
                                        gpu_sandbox: Path, variable: str) -> None:
    result = any_capsa("exec", str(gpu_sandbox), "ls", "/.singularity.d/libs",
                       env=fake_driver.environ(**{variable: "1"}))
    expected = ["libhsa-runtime64.so.1"] if variable.endswith("ROCM") else NV_LIBS
    assert sorted(lines(result)) == expected
