"""exec/run on an image named by URI: pulled through the cache into a
temporary SIF that is removed after the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa
from support.tinyoci import make_layout

pytestmark = pytest.mark.needs_userns


def test_exec_an_oci_layout(any_capsa: Capsa, scratch: Path) -> None:
    layout = scratch / "layout"
    busybox = Path("/bin/busybox").read_bytes()
    make_layout(layout, "latest", {"bin/busybox": busybox, "etc/passwd": b"root:x:0:0::/:/\n"})
    tmp = scratch / "tmp"
    tmp.mkdir()
    any_capsa.user.own(tmp)
    env = {"TMPDIR": str(tmp), "APPTAINER_CACHEDIR": str(tmp / "cache")}
    result = any_capsa("exec", f"oci:{layout}:latest", "/bin/busybox", "echo", "hi", env=env)
    assert result.returncode == 0, result
    assert result.stdout == "hi\n"
    assert sorted(p.name for p in tmp.iterdir()) in (["cache"], [])
