"""Fixtures for the attack tests (issue 13, "trust that holds").

- ``signed_images``: two SIFs that differ only in ``/etc/marker`` ("signed",
  signed by the site's key, and "evil", unsigned), a key pair for the site
  and one the user made, an image the user signed himself.
- ``hostile``: a second unprivileged user, ``capsaevil``, who plants things.
- the registry fixtures of :mod:`support.registry`, and the mount fixtures.

Each attack is counted in :mod:`trust.figures`; the totals are printed at
the end of the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import mounting
from support.env import SCRATCH, is_root
from support.images import make_rootfs, make_sif, make_squashfs
from support.keys import write_keypair
from support.registry import hostile_registry, plain_registry  # noqa: F401  (fixtures)
from support.users import User, ensure_hostile_user
from trust import figures

_skip_root_without_mounts = mounting._skip_root_without_mounts


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    path = figures.figures_path()
    lines = figures.report_lines(path)
    if lines:
        terminalreporter.section("trust figures (attacks tried, attacks that worked)")
        for line in lines:
            terminalreporter.write_line(line)
    if "CAPSA_TRUST_FIGURES" not in os.environ:
        path.unlink(missing_ok=True)


def scratch_dir(prefix: str, mode: int = 0o755) -> Path:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))
    os.chmod(path, mode)
    return path


def marked_sif(work: Path, marker: str) -> Path:
    """A busybox SIF whose /etc/marker says *marker*."""
    rootfs = make_rootfs(work / f"{marker}-root")
    (rootfs / "etc/marker").write_text(marker + "\n")
    (rootfs / "etc/marker").chmod(0o644)
    sif = make_sif(make_squashfs(rootfs, work / f"{marker}.sqfs"), work / f"{marker}.sif")
    shutil.rmtree(rootfs)
    sif.chmod(0o644)
    return sif


def sign(image: Path, private_key: Path) -> None:
    from capsa.integrity.dsse import load_private_key
    from capsa.integrity.sign import DsseSigner, sign_image

    sign_image(image, DsseSigner(load_private_key(str(private_key))))


@pytest.fixture(scope="session")
def signed_images() -> Iterator[dict[str, Path]]:
    work = scratch_dir("trust-images-")
    site_private, site_public = write_keypair(work, "site")
    user_private, user_public = write_keypair(work, "mine")
    signed = marked_sif(work, "signed")
    sign(signed, site_private)
    evil = marked_sif(work, "evil")
    self_signed = work / "self-signed.sif"
    shutil.copy(evil, self_signed)
    sign(self_signed, user_private)
    self_signed.chmod(0o644)
    site_private.unlink()  # nobody but the site ever had it
    yield {"signed": signed, "evil": evil, "self_signed": self_signed,
           "site_key": site_public, "user_key": user_public, "user_private": user_private,
           "work": work}
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def hostile() -> User:
    if not is_root():
        pytest.skip("creating the hostile user needs root")
    return ensure_hostile_user()
