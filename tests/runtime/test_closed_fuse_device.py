"""A user who cannot open /dev/fuse (mode 0600, as on this VM when fresh) still
runs the image: capsa notices by itself and extracts to a temporary sandbox.

The other runtime tests force the fallback through the site's settings; this one
closes the device for real (the suite runs tests one at a time, and the mode
is restored whatever happens).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_userns]


@pytest.fixture
def closed_fuse() -> Iterator[None]:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this host")
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", 0o600)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", mode)


def test_unopenable_fuse_falls_back_to_a_sandbox(
    capsa_user: Capsa, images: dict[str, Path], scratch: Path, closed_fuse: None
) -> None:
    tmp = scratch / "tmp"
    tmp.mkdir()
    capsa_user.user.own(tmp)
    result = capsa_user("exec", str(images["sif"]), "sh", "-c", "echo uid $(id -u)",
                        env={"TMPDIR": str(tmp)})
    assert result.returncode == 0, result
    assert result.stdout == f"uid {capsa_user.user.uid}\n"
    assert result.stderr == "INFO:    Converting SIF file to temporary sandbox...\n"
    assert list(tmp.iterdir()) == []  # the sandbox is gone afterwards
