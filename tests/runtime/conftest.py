"""Fixtures for the runtime tests: test images (built once per session),
the FUSE / no-FUSE switch, and a way to start capsa in the background."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from support.cli import Capsa
from support.env import SCRATCH, fuse_usable, is_root
from support.images import build_all


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, Path]]:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    base = Path(tempfile.mkdtemp(prefix="images-", dir=SCRATCH))
    os.chmod(base, 0o755)
    yield build_all(base / "img")
    shutil.rmtree(base, ignore_errors=True)


@functools.cache
def root_can_mount() -> bool:
    """Can root make a mount namespace here (not so in an unprivileged CI container)?"""
    if not is_root() or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--", "mount", "-t", "tmpfs", "none", "/mnt"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.fixture(autouse=True)
def _skip_root_without_mounts(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    as_root = callspec is not None and callspec.params.get("any_capsa") == "root"
    if as_root and not root_can_mount():
        pytest.skip("root cannot create mount namespaces here")


@pytest.fixture(params=["fuse", "nofuse"])
def mount_mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for the two ways a SIF gets mounted: FUSE (or, as root, the
    kernel's squashfs through a loop device) and the extraction fallback."""
    if request.param == "fuse":
        callspec = getattr(request.node, "callspec", None)
        as_root = callspec is not None and callspec.params.get("any_capsa") == "root"
        if as_root and not os.path.exists("/dev/loop-control"):
            pytest.skip("no loop devices for root")
        if not as_root and not fuse_usable():
            pytest.skip("no FUSE for users (or no squashfuse_ll)")
        return {}
    return {"CAPSA_DISABLE_FUSE": "1"}


def full_argv(capsa: Capsa, *args: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The argv capsa's fixture would run, for Popen (env passed through env(1))."""
    argv = capsa.user.wrap(capsa.argv(*args))
    full = capsa.full_env(env)
    prefix = ["env", "-i", *(f"{k}={v}" for k, v in full.items())]
    if argv[0] == "setpriv":
        at = argv.index("--reset-env") + 1
        return [*argv[:at], *prefix, *argv[at:]]
    return [*prefix, *argv]


def spawn(capsa: Capsa, *args: str, env: Mapping[str, str] | None = None,
          cwd: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(full_argv(capsa, *args, env=env), text=True,
                            cwd=cwd or str(capsa.user.home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
