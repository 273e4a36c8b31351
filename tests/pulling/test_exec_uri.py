"""``capsa exec|run docker://...``: pulled into the cache once, then run from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns


def test_exec_docker_uri_runs_from_the_cache(any_capsa: Capsa, images: Any,
                                             scratch: Path) -> None:
    cache = scratch / "cache"
    env = {"APPTAINER_CACHEDIR": str(cache), "APPTAINER_NOHTTPS": "1"}
    ref = images.ref("test/busybox:latest")
    first = any_capsa("exec", ref, "echo", "hello", cwd=scratch, env=env)
    assert first.returncode == 0, first
    assert first.stdout == "hello\n"
    assert "Converting OCI blobs to SIF format" in first.stderr
    cached = list((cache / "cache" / "oci-tmp").iterdir())
    assert len(cached) == 1
    second = any_capsa("exec", ref, "echo", "again", cwd=scratch, env=env)
    assert second.returncode == 0, second
    assert second.stdout == "again\n"
    assert "Converting" not in second.stderr
    # Nothing but the cache is left behind: the image ran in place.
    assert sorted(p.name for p in scratch.iterdir()) == ["cache"]
    assert list((cache / "cache" / "oci-tmp").iterdir()) == cached


def test_exec_unknown_tag_is_one_fatal_line(any_capsa: Capsa, images: Any,
                                            scratch: Path) -> None:
    env = {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_NOHTTPS": "1"}
    result = any_capsa("exec", images.ref("test/busybox:no-such-tag"), "true",
                       cwd=scratch, env=env)
    assert result.returncode == 255, result
    assert result.stderr.startswith("FATAL:   ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
