"""A real Debian base image for the tests that need a package manager.

``debootstrap --variant=minbase bookworm`` from the mirror this machine's apt
uses (see :func:`support.ocibuild.apt_mirror`; built once per machine, as
root), pushed to the suite's local registry as ``test/debian:bookworm-slim``;
and whether that mirror answers, for the tests whose ``%post`` runs apt.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ocibuild
from support.env import SCRATCH, is_root
from support.registry import Registry

TAG = "test/debian:bookworm-slim"


@dataclass(frozen=True)
class DebianBase:
    """The base in the registry (``ref``), pulled once to a SIF (``sif``), and
    the apt mirror (``mirror``, empty when it does not answer)."""

    registry: Registry
    sif: Path
    mirror: str

    @property
    def ref(self) -> str:
        return self.registry.ref(TAG)

    @property
    def host(self) -> str:
        """``HOST:PORT/test/debian:bookworm-slim``, for ``From:`` lines."""
        return self.ref.removeprefix("docker://")

    def sources_line(self) -> str:
        """A ``sources.list`` line for the host's mirror; skips without one."""
        if not self.mirror:
            pytest.skip(f"the Debian mirror this machine's apt names does not answer "
                        f"({ocibuild.apt_mirror()})")
        return f"deb {self.mirror} bookworm main"


@functools.cache
def mirror_answers(mirror: str) -> bool:
    try:
        with urllib.request.urlopen(f"{mirror.rstrip('/')}/dists/bookworm/Release",
                                    timeout=20) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def debian_base(registry: Registry) -> Iterator[DebianBase]:
    """The fixture's body: build (once per machine), push, pull to a SIF."""
    if not is_root():
        pytest.skip("building the Debian base image needs root (debootstrap)")
    try:
        mirror = ocibuild.apt_mirror()
        ocibuild.debian_rootfs_tar()
    except (subprocess.CalledProcessError, RuntimeError) as err:
        pytest.skip(f"debootstrap of the Debian base failed here: {err}")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    work = Path(tempfile.mkdtemp(prefix="debian-", dir=SCRATCH))
    os.chmod(work, 0o755)
    try:
        layout = ocibuild.debian_layout(work / "layout", "bookworm-slim")
        registry.push_oci_layout(layout, TAG)
        sif = work / "debian.sif"
        env = dict(os.environ, APPTAINER_CACHEDIR=str(work / "cache"),
                   PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        subprocess.run([_python(), "-m", "capsa", "-q", "pull", "--no-https", str(sif),
                        registry.ref(TAG)], check=True, env=env, capture_output=True)
        sif.chmod(0o644)
        yield DebianBase(registry, sif, mirror if mirror_answers(mirror) else "")
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _python() -> str:
    from support.env import VENV

    return str(VENV / "bin" / "python")
