"""Where things are, and what this host can do (probed once, cached)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
SHARED = Path(os.environ.get("CAPSA_SHARED", REPO.parent / "shared"))
INTEROP = SHARED / "interop" / "sif-reference"
VENV = Path(os.environ.get("CAPSA_VENV", "/opt/capsa/venv"))
# spython, Snakemake, cwltool, singularity-compose (scripts/install-deps)
CLIENTS = Path(os.environ.get("CAPSA_CLIENTS", "/opt/capsa/clients"))
# A world-readable scratch area: the unprivileged user must reach test files,
# and pytest's own tmp_path (under /tmp/pytest-of-root, mode 0700) it cannot.
SCRATCH = Path(os.environ.get("CAPSA_TEST_SCRATCH", "/var/tmp/capsa-tests"))
TEST_USER = os.environ.get("CAPSA_TEST_USER", "capsatest")
NO_SUBIDS_USER = os.environ.get("CAPSA_TEST_USER_NO_SUBIDS", "capsanosub")


def is_root() -> bool:
    return os.geteuid() == 0


def have(program: str) -> bool:
    return shutil.which(program) is not None


@functools.cache
def userns_works() -> bool:
    """Can an unprivileged process create a user namespace here?"""
    if not have("unshare"):
        return False
    argv = ["unshare", "--user", "--map-current-user", "true"]
    if is_root():
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True).returncode == 0


@functools.cache
def fuse_usable() -> bool:
    """Is /dev/fuse there and open to every user, and squashfuse_ll installed?"""
    try:
        mode = os.stat("/dev/fuse").st_mode
    except OSError:
        return False
    return bool(mode & 0o006 == 0o006) and have("squashfuse_ll")
