"""Fixtures for the suites that mount images (runtime, instance): skip root
where it cannot make mount namespaces, and run each test with FUSE (or, as
root, a loop device) and with the extraction fallback.  A conftest imports
them by name."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

from support.env import fuse_usable, is_root
from support.site import site_env


@functools.cache
def root_can_mount() -> bool:
    """Can root make a mount namespace here (not so in an unprivileged CI container)?"""
    if not is_root() or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--", "mount", "-t", "tmpfs", "none", "/mnt"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def _as_root(request: pytest.FixtureRequest) -> bool:
    callspec = getattr(request.node, "callspec", None)
    return callspec is not None and callspec.params.get("any_capsa") == "root"


@pytest.fixture(autouse=True)
def _skip_root_without_mounts(request: pytest.FixtureRequest) -> None:
    if _as_root(request) and not root_can_mount():
        pytest.skip("root cannot create mount namespaces here")


@pytest.fixture(params=["fuse", "nofuse"])
def mount_mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for the two ways a SIF gets mounted: FUSE (or, as root, the
    kernel's squashfs through a loop device) and the extraction fallback (a
    site whose settings say never to mount images)."""
    if request.param == "fuse":
        if _as_root(request) and not os.path.exists("/dev/loop-control"):
            pytest.skip("no loop devices for root")
        if not _as_root(request) and not fuse_usable():
            pytest.skip("no FUSE for users (or no squashfuse_ll)")
        return {}
    return site_env(fuse=False)
