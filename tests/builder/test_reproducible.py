"""SOURCE_DATE_EPOCH: two builds of one definition from one base digest,
whose %post is deterministic, give the same bytes, as root and rootless;
every time in the image is clamped to it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from support.cli import Capsa
from support.ocibuild import partition_offset, sif_cat

from .conftest import BuildImages

pytestmark = pytest.mark.needs_userns

EPOCH = 1_600_000_000  # older than the base's files: every time is clamped
DEFINITION = """\
Bootstrap: docker
From: {ref}

%post
    mkdir -p /opt/tool/bin /opt/tool/share
    echo 'echo tool ran' > /opt/tool/bin/tool
    chmod 755 /opt/tool/bin/tool
    ln -s bin/tool /opt/tool/run
    for n in 3 1 2; do echo $n > /opt/tool/share/f$n; done
    echo "post.label yes" >> $APPTAINER_LABELS

%environment
    export TOOL_HOME=/opt/tool

%runscript
    exec /opt/tool/bin/tool

%labels
    Author capsa tests

%help
    A reproducible image.
"""


def _times(sif: Path) -> set[int]:
    """Every modification time in the SIF's squashfs (seconds)."""
    out = subprocess.run(["unsquashfs", "-lln", "-o", str(partition_offset(sif)), str(sif)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "TZ": "UTC"}).stdout
    stamps = {" ".join(line.split()[3:5]) for line in out.splitlines() if "squashfs-root" in line}
    return {int(time.mktime(time.strptime(s + " UTC", "%Y-%m-%d %H:%M %Z"))) // 60
            for s in stamps}


def _build(capsa: Capsa, scratch: Path, definition: Path, name: str, *flags: str) -> Path:
    env = {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(scratch),
           "SOURCE_DATE_EPOCH": str(EPOCH), "TZ": "UTC"}
    result = capsa("build", "--no-https", *flags, name, str(definition), cwd=scratch, env=env)
    assert result.returncode == 0, result
    return scratch / name


def test_two_builds_are_identical(any_capsa: Capsa, build_images: BuildImages,
                                  scratch: Path) -> None:
    definition = scratch / "repro.def"
    definition.write_text(DEFINITION.format(ref=build_images.ref().removeprefix("docker://")))
    definition.chmod(0o644)
    first = _build(any_capsa, scratch, definition, "one.sif")
    time.sleep(1.1)  # a clock that moved on must not show
    second = _build(any_capsa, scratch, definition, "two.sif", "--disable-cache")
    assert first.read_bytes() == second.read_bytes()
    assert _times(first) == {EPOCH // 60}
    labels = json.loads(sif_cat(first, "/.singularity.d/labels.json"))
    assert labels["org.label-schema.build-date"] == "Sunday_13_September_2020_12:26:40_UTC"
    assert labels["org.opencontainers.image.created"] == "2020-09-13T12:26:40Z"
    inspect = any_capsa("inspect", "--json", str(first), cwd=scratch)
    assert inspect.returncode == 0, inspect
    run = any_capsa("run", str(first), cwd=scratch)
    assert run.stdout == "tool ran\n", run
