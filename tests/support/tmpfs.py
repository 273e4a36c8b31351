"""A small tmpfs for tests that must run out of space for real (root only:
the unprivileged user is handed a world-writable directory on it)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.env import SCRATCH, is_root


@contextlib.contextmanager
def small_tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of *size* (``mount -o size=``), mode 1777, unmounted after."""
    if not is_root():
        pytest.skip("mounting a small tmpfs needs root")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    mountpoint = Path(tempfile.mkdtemp(prefix="tmpfs-", dir=SCRATCH))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "capsa-test",
                    str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        os.rmdir(mountpoint)


def leftovers(path: Path) -> list[str]:
    """What is left under *path* (relative names), to assert it is nothing."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
