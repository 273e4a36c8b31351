"""Nothing is left behind: no squashfuse process, mount, loop device or
temporary directory, after a normal exit, a failure or a signal; and
signals reach the container."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.runtime.conftest import spawn

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns


def _squashfuse_count() -> int:
    out = subprocess.run(["pgrep", "-c", "-x", "squashfuse_ll"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def _loop_count() -> int:
    return sum(1 for path in glob.glob("/sys/block/loop*/loop/backing_file")
               if Path(path).read_text().strip())


def _mount_count() -> int:
    return len(Path("/proc/self/mountinfo").read_text().splitlines())


def _state() -> tuple[int, int, int]:
    return _squashfuse_count(), _loop_count(), _mount_count()


def _settled(before: tuple[int, int, int]) -> tuple[int, int, int]:
    """The state once exiting helpers are gone (the kernel may lag a moment)."""
    for _ in range(100):
        now = _state()
        if now == before:
            return now
        time.sleep(0.05)
    return _state()


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    for _ in range(200):
        if path.exists() or proc.poll() is not None:
            return
        time.sleep(0.05)


def test_normal_and_failed_runs_leave_nothing(any_capsa: Capsa, images: dict[str, Path],
                                              scratch: Path,
                                              mount_mode: dict[str, str]) -> None:
    before = _state()
    env = {"TMPDIR": str(scratch), **mount_mode}
    assert any_capsa("exec", str(images["sif"]), "true", env=env).returncode == 0
    assert any_capsa("exec", str(images["sif"]), "false", env=env).returncode == 1
    assert any_capsa("exec", "--pwd", "/nope", str(images["sif"]), "true",
                     env=env).returncode == 255
    assert any_capsa("inspect", str(images["sif"]), env=env).returncode == 0
    assert _settled(before) == before
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signals_are_forwarded(any_capsa: Capsa, images: dict[str, Path], scratch: Path,
                               signum: int) -> None:
    before = _state()
    ready = scratch / "ready"
    proc = spawn(any_capsa, "exec", "-B", f"{scratch}:/s", str(images["sif"]), "sh", "-c",
                 "touch /s/ready; exec sleep 30", env={"TMPDIR": str(scratch)})
    _wait_for(ready, proc)
    assert ready.exists(), proc.communicate()
    os.kill(proc.pid, signum)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signum, err
    assert _settled(before) == before
    assert sorted(p.name for p in scratch.iterdir()) == ["ready"]


def test_killed_monitor_takes_everything_down(any_capsa: Capsa, images: dict[str, Path],
                                              scratch: Path) -> None:
    before = _state()
    ready = scratch / "ready"
    proc = spawn(any_capsa, "exec", "-B", f"{scratch}:/s", str(images["sif"]), "sh", "-c",
                 "touch /s/ready; exec sleep 30", env={"TMPDIR": str(scratch)})
    _wait_for(ready, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=20)
    assert _settled(before) == before
    out = subprocess.run(["pgrep", "-f", "sleep 30"], capture_output=True, text=True)
    assert out.stdout == ""


@pytest.mark.parametrize("flags", [["--pid"], ["--pid", "--no-init"], ["--contain"]])
def test_signals_reach_the_command_in_namespaces(any_capsa: Capsa, images: dict[str, Path],
                                                 scratch: Path, flags: list[str]) -> None:
    before = _state()
    ready = scratch / "ready"
    # a shell that traps TERM, so that even as PID 1 (--no-init) it acts on it
    script = "trap 'exit 42' TERM; touch /s/ready; while :; do sleep 0.1; done"
    proc = spawn(any_capsa, "exec", *flags, "-B", f"{scratch}:/s", str(images["sif"]),
                 "sh", "-c", script, env={"TMPDIR": str(scratch)})
    _wait_for(ready, proc)
    assert ready.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 42, err
    assert _settled(before) == before
