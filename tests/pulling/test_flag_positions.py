"""``pull -q OUT URI``: Apptainer's global flags after the command (scripts write them there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.cli import Capsa


def test_quiet_pull_after_the_command(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    any_capsa.user.own(scratch)
    env = {"APPTAINER_CACHEDIR": str(scratch / "cache")}
    result = any_capsa("pull", "-q", "--no-https", "out.sif", images.ref("test/busybox:latest"),
                       cwd=scratch, env=env)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert (scratch / "out.sif").is_file()
    loud = any_capsa("pull", "--force", "--no-https", "out.sif",
                     images.ref("test/busybox:latest"), cwd=scratch, env=env)
    assert loud.returncode == 0 and "INFO:    " in loud.stderr, loud
