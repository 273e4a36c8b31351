"""The hot paths import only what they need (``python -X importtime``).

``capsa exec`` starts in a few tens of milliseconds only if it leaves the
network, crypto and pull machinery alone; ``--version`` and ``sif list``
likewise.  A module appearing here is a regression even if every test of
behaviour still passes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.env import VENV

# Never on these paths: network, TLS, crypto, the pull/registry/signing
# stages, the SIF writer, and the stdlib logging machinery.
FORBIDDEN = (
    "http", "http.client", "ssl", "socket", "urllib", "urllib.parse", "email", "json",
    "hashlib", "logging", "cryptography", "rich", "tempfile", "subprocess", "uuid",
    "capsa.registry", "capsa.pulling", "capsa.oci", "capsa.content", "capsa.integrity",
    "capsa.sif.writer", "capsa.builder", "capsa.cli.registry_flags",
)


def imported(args: list[str], source: Path, cwd: Path) -> set[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(source), "HOME": str(cwd),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([str(VENV / "bin" / "python"), "-X", "importtime", "-m", "capsa",
                           *args], capture_output=True, text=True, env=env, cwd=cwd)
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert names, proc.stderr
    return names


# The exec path's own budget: its values are NamedTuples, because dataclasses
# (with inspect) cost several milliseconds of every start; nor the library's
# API or the build.
EXEC_FORBIDDEN = ("dataclasses", "inspect", "pickle", "capsa.api")


def check(names: set[str], forbidden: tuple[str, ...] = FORBIDDEN) -> None:
    leaked = sorted(n for n in names if n in forbidden or n.split(".")[0] in forbidden)
    assert not leaked, f"imported on a hot path: {leaked}"


def test_version_imports_nothing_heavy(source_copy: Path, tmp_path: Path) -> None:
    names = imported(["--version"], source_copy, tmp_path)
    check(names)
    assert not any(n.startswith("capsa.runtime") or n.startswith("capsa.sif") for n in names)


@pytest.mark.needs_shared
def test_sif_list_imports_only_the_reader(source_copy: Path, tmp_path: Path,
                                          interop: Path) -> None:
    check(imported(["sif", "list", str(interop / "images" / "one-group.sif")],
                   source_copy, tmp_path))


@pytest.mark.needs_userns
def test_exec_imports_only_the_runtime(source_copy: Path, scratch: Path) -> None:
    from support.images import build_all

    image = build_all(scratch / "img")["sif"]
    names = imported(["exec", str(image), "/bin/true"], source_copy, scratch)
    check(names, FORBIDDEN + EXEC_FORBIDDEN)
    assert "capsa.runtime.launcher" in names
