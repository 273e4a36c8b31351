"""Singularity 2.x images: a launch line, then squashfs (``.simg``) or ext3
(``.img``, which only root can mount; users get one FATAL saying how to
convert it with ``build``, and ``build`` converts it for anyone)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa
from support.env import SCRATCH
from support.images import make_ext3, make_legacy
from support.site import site_env

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="module")
def legacy(images: dict[str, Path]) -> Iterator[dict[str, Path]]:
    base = Path(tempfile.mkdtemp(prefix="legacy-", dir=SCRATCH))
    os.chmod(base, 0o755)
    ext3 = make_ext3(images["sandbox"], base / "plain.ext3")
    yield {
        "simg": make_legacy(images["squashfs"], base / "busybox.simg"),
        "img": make_legacy(ext3, base / "busybox.img"),
        "ext3": ext3,
    }
    shutil.rmtree(base, ignore_errors=True)


def _loop_usable() -> bool:
    return os.path.exists("/dev/loop-control")


@pytest.mark.parametrize("mode", [{}, site_env(fuse=False)], ids=["mounted", "extracted"])
def test_simg_runs(any_capsa: Capsa, legacy: dict[str, Path], mode: dict[str, str]) -> None:
    image = str(legacy["simg"])
    ran = any_capsa("exec", image, "cat", "/.singularity.d/runscript", env=mode)
    assert ran.returncode == 0, ran
    assert ran.stdout == '#!/bin/sh\necho "runscript args: $*"\n'
    script = any_capsa("run", image, "a", "b", env=mode)
    assert (script.returncode, script.stdout) == (0, "runscript args: a b\n"), script
    labels = any_capsa("inspect", "--json", image, env=mode)
    assert labels.returncode == 0 and '"maintainer": "capsa tests"' in labels.stdout, labels


def test_ext3_image_as_root(capsa: Capsa, legacy: dict[str, Path]) -> None:
    if not capsa.user.is_root or not _loop_usable():
        pytest.skip("mounting an ext3 image needs root and a loop device")
    for image in (legacy["img"], legacy["ext3"]):
        ran = capsa("exec", str(image), "sh", "-c", "echo $((6 * 7)); grep -c ' / ' "
                    "/proc/self/mountinfo")
        assert (ran.returncode, ran.stdout.split()[0], ran.stderr) == (0, "42", ""), ran
    script = capsa("run", str(legacy["img"]), "x")
    assert script.stdout == "runscript args: x\n", script
    labels = capsa("inspect", str(legacy["img"]))
    assert "maintainer: capsa tests" in labels.stdout, labels


def test_ext3_image_as_user_is_one_clear_fatal(capsa_user: Capsa, legacy: dict[str, Path],
                                               scratch: Path) -> None:
    tmp = scratch / "tmp"
    tmp.mkdir()
    capsa_user.user.own(tmp)
    image = str(legacy["img"])
    for command in (("exec", image, "true"), ("run", image), ("inspect", image)):
        result = capsa_user(*command, env={"TMPDIR": str(tmp)})
        assert result.returncode == 255, result
        assert result.stderr == (
            f"FATAL:   could not open image {image}: it is an ext3 format container image "
            "(Singularity 2.x), which only root can mount here, with a loop device; convert "
            f"it to SIF once with: apptainer build busybox.sif {image}\n"), result
        assert list(tmp.iterdir()) == []


def test_build_converts_legacy_images(any_capsa: Capsa, legacy: dict[str, Path],
                                      scratch: Path) -> None:
    any_capsa.user.own(scratch)
    for name in ("img", "simg"):
        out = scratch / f"{name}.sif"
        built = any_capsa("build", str(out), str(legacy[name]), cwd=scratch,
                          env={"APPTAINER_CACHEDIR": str(scratch / "cache")})
        assert built.returncode == 0, built
        ran = any_capsa("run", str(out), "converted")
        assert (ran.returncode, ran.stdout) == (0, "runscript args: converted\n"), ran


def test_simg_runs_as_a_program(any_capsa: Capsa, legacy: dict[str, Path]) -> None:
    """``./image.simg args``: the launch line runs ``run-singularity`` from PATH."""
    import subprocess

    env = any_capsa.user.test_env()
    env["PATH"] = f"{any_capsa.pythonpath / 'bin'}:{env['PATH']}"
    argv = any_capsa.user.wrap([str(legacy["simg"]), "one", "two"])
    if argv[0] == "setpriv":
        at = argv.index("--reset-env") + 1
        argv = [*argv[:at], "env", *(f"{k}={v}" for k, v in env.items()), *argv[at:]]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          cwd=str(any_capsa.user.home))
    assert (done.returncode, done.stdout, done.stderr) == (0, "runscript args: one two\n", "")
