"""Fixtures for the runtime tests: test images (built once per session),
the FUSE / no-FUSE switch, and a way to start capsa in the background."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from support import mounting
from support.cli import Capsa
from support.env import SCRATCH
from support.images import build_all
from support.site import wants_site

# the mounting fixtures, shared with the other suites that mount images
_skip_root_without_mounts = mounting._skip_root_without_mounts
mount_mode = mounting.mount_mode


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, Path]]:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    base = Path(tempfile.mkdtemp(prefix="images-", dir=SCRATCH))
    os.chmod(base, 0o755)
    yield build_all(base / "img")
    shutil.rmtree(base, ignore_errors=True)


def full_argv(capsa: Capsa, *args: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The argv capsa's fixture would run, for Popen (env passed through env(1))."""
    full = capsa.full_env(env)
    argv = capsa.user.wrap(capsa.argv(*args, site=wants_site(full)))
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
