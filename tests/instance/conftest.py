"""Fixtures for the instance tests: the busybox images plus a variant with a
startscript, and a per-test instance directory (``APPTAINER_CONFIGDIR``)
and ``TMPDIR``, so tests neither see each other's instances nor leave any."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import mounting
from support.cli import Capsa, Result
from support.env import SCRATCH
from support.images import build_all, make_rootfs, make_sif, make_squashfs

# Prints its arguments; "exit N" ends with status N, "quit" with 0 (the
# instance then stays, as in Apptainer), "deaf" ignores the stop signals,
# "daemon" leaves a process behind and exits 0; otherwise it keeps running.
STARTSCRIPT = """#!/bin/sh
echo "startscript args: $*"
case "$1" in
    exit) exit "$2" ;;
    quit) exit 0 ;;
    deaf) trap '' INT TERM; while :; do sleep 0.1; done ;;
    daemon) sleep 600 & exit 0 ;;
esac
exec sleep 600
"""

# the mounting fixtures, shared with the other suites that mount images
_skip_root_without_mounts = mounting._skip_root_without_mounts
mount_mode = mounting.mount_mode


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, Path]]:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    base = Path(tempfile.mkdtemp(prefix="instance-images-", dir=SCRATCH))
    os.chmod(base, 0o755)
    paths = build_all(base / "img")
    root = make_rootfs(base / "start-root")
    script = root / ".singularity.d/startscript"
    script.write_text(STARTSCRIPT)
    script.chmod(0o755)
    paths["start_sif"] = make_sif(make_squashfs(root, base / "start.sqfs"), base / "start.sif")
    yield paths
    shutil.rmtree(base, ignore_errors=True)


def _processes() -> list[tuple[str, str]]:
    """(/proc/PID, command line) of every process."""
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            line = Path(path).read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        found.append((os.path.dirname(path), line))
    return found


def _open_files(proc: str) -> list[str]:
    found = []
    for link in glob.glob(f"{proc}/fd/*"):
        try:
            found.append(os.readlink(link))
        except OSError:
            continue
    return found


def squashfuse_count(images: Path) -> int:
    """squashfuse processes serving our images (other test sessions may run
    their own at the same time: those are not counted).  capsa hands the
    image over as an open file (``/dev/fd/N``): look at what they hold."""
    return sum(1 for proc, line in _processes()
               if line.startswith(("squashfuse", "/usr/bin/squashfuse"))
               and any(str(images) in target for target in _open_files(proc)))


def loop_count(images: Path) -> int:
    """Loop devices backed by our images."""
    count = 0
    for path in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            count += str(images) in Path(path).read_text()
        except OSError:
            continue
    return count


def mount_count(images: Path) -> int:
    """Mounts of our images that the host's mount namespace can see."""
    return Path("/proc/self/mountinfo").read_text().count(str(images))


def footprint(images: Path) -> tuple[int, int, int]:
    return squashfuse_count(images), loop_count(images), mount_count(images)


@dataclass
class Instances:
    """capsa (as root or the test user) with its own instance and temp dirs."""

    capsa: Capsa
    config: Path
    tmpdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.capsa(*args, env={**self.env, **(env or {})}, timeout=60)

    def names(self) -> list[str]:
        import json

        result = self("instance", "list", "--json")
        assert result.returncode == 0, str(result)
        return [row["instance"] for row in json.loads(result.stdout)["instances"]]

    def host_dir(self, kind: str) -> Path:
        return self.config / "instances" / kind / os.uname().nodename / self.capsa.user.name

    def state_files(self) -> list[Path]:
        return sorted(self.host_dir("app").glob("*/*.json"))

    def leftovers(self) -> list[str]:
        """What an instance may leave in TMPDIR (sessions, sandboxes)."""
        return sorted(p.name for p in self.tmpdir.iterdir())


def _instances(capsa: Capsa, scratch: Path, extra: dict[str, str]) -> Iterator[Instances]:
    config = scratch / "config"
    tmpdir = scratch / "tmp"
    tmpdir.mkdir()
    os.chmod(tmpdir, 0o1777)
    env = {"APPTAINER_CONFIGDIR": str(config), "TMPDIR": str(tmpdir), **extra}
    helper = Instances(capsa, config, tmpdir, env)
    yield helper
    helper("instance", "stop", "-a", "-F")


@pytest.fixture
def instances(any_capsa: Capsa, scratch: Path,
              mount_mode: dict[str, str]) -> Iterator[Instances]:
    """As root and the test user, with FUSE (loop as root) and extraction."""
    yield from _instances(any_capsa, scratch, mount_mode)


@pytest.fixture
def quick(any_capsa: Capsa, scratch: Path) -> Iterator[Instances]:
    """As root and the test user, in the default mount mode only."""
    yield from _instances(any_capsa, scratch, {})
