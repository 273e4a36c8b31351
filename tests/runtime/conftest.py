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


@pytest.fixture(params=["fuse", "nofuse"])
def mount_mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for the two ways a SIF gets mounted: FUSE (or, as root, the
    kernel's squashfs) and the extraction fallback."""
    if request.param == "fuse":
        if not is_root() and not fuse_usable():
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
