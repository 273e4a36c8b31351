"""SOURCE_DATE_EPOCH: two pulls of one image digest give the same bytes
(Apptainer 1.5's switch), as root and as a user; without it nothing changes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support.cli import Capsa
from support.ocibuild import partition_offset

TRICKY = "test/tricky:latest"
EPOCH = 1_600_000_000  # older than the test layers (1_700_000_000): every time is clamped
EPOCH_TEXT = "2020-09-13 12:26"


def sif_times(sif: Path) -> set[str]:
    """The distinct modification times (UTC, to the minute) in the SIF's squashfs."""
    out = subprocess.run(["unsquashfs", "-lln", "-o", str(partition_offset(sif)), str(sif)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "TZ": "UTC"}).stdout
    return {" ".join(line.split()[3:5]) for line in out.splitlines()
            if "squashfs-root" in line}


def _env(scratch: Path, cache: str = "cache") -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / cache), "APPTAINER_TMPDIR": str(scratch),
            "SOURCE_DATE_EPOCH": str(EPOCH)}


def _pull(capsa: Capsa, images: Any, scratch: Path, name: str, *flags: str,
          cache: str = "cache") -> Path:
    result = capsa("pull", "--no-https", *flags, name, images.ref(TRICKY), cwd=scratch,
                   env=_env(scratch, cache))
    assert result.returncode == 0, result
    assert result.stderr.count("FATAL") == 0
    return scratch / name


def test_two_pulls_are_identical(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    first = _pull(any_capsa, images, scratch, "one.sif", "--disable-cache")
    time.sleep(1.1)  # a clock that moved on must not show
    second = _pull(any_capsa, images, scratch, "two.sif", cache="cache-a")
    third = _pull(any_capsa, images, scratch, "three.sif", "--disable-cache")
    assert first.read_bytes() == second.read_bytes() == third.read_bytes()
    assert sif_times(first) == {EPOCH_TEXT}
    header = first.read_bytes()[:128]
    assert header[48:64] == bytes(16)  # the nil UUID, as Apptainer's deterministic SIFs


@pytest.mark.needs_root
def test_root_and_user_pull_the_same_bytes(capsa: Capsa, capsa_user: Capsa, images: Any,
                                          scratch: Path) -> None:
    mine = _pull(capsa, images, scratch, "root.sif", "--disable-cache")
    theirs = _pull(capsa_user, images, scratch, "user.sif", "--disable-cache")
    assert mine.read_bytes() == theirs.read_bytes()


def test_without_the_variable_nothing_changes(capsa: Capsa, images: Any,
                                             scratch: Path) -> None:
    env = {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(scratch)}
    for name in ("a.sif", "b.sif"):
        result = capsa("pull", "--no-https", "--disable-cache", name, images.ref(TRICKY),
                       cwd=scratch, env=env)
        assert result.returncode == 0, result
    a, b = (scratch / "a.sif").read_bytes(), (scratch / "b.sif").read_bytes()
    assert a[48:64] != bytes(16) and a[48:64] != b[48:64]  # random UUIDs, as before


def test_a_bad_value_is_refused(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    env = {**_env(scratch), "SOURCE_DATE_EPOCH": "yesterday"}
    result = any_capsa("pull", "--no-https", "x.sif", images.ref(TRICKY), cwd=scratch,
                       env=env)
    assert result.returncode == 255, result
    assert result.stderr.startswith("FATAL:   could not parse SOURCE_DATE_EPOCH 'yesterday'")
    assert list(scratch.iterdir()) == []
