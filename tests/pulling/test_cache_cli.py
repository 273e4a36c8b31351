"""``capsa cache list`` and ``capsa cache clean``, with Apptainer's output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from support.cli import Capsa


def _env(scratch: Path) -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / "cache")}


def test_list_empty(any_capsa: Capsa, scratch: Path) -> None:
    result = any_capsa("cache", "list", env=_env(scratch), cwd=scratch)
    assert result.returncode == 0, result
    assert result.stdout == ("There are 0 container file(s) using 0.00 KiB and 0 oci blob "
                             "file(s) using 0.00 KiB of space\nTotal space used: 0.00 KiB\n")


def test_list_and_clean_after_pull(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    env = _env(scratch)
    pulled = any_capsa("pull", "--no-https", "b.sif", images.ref("test/busybox:latest"),
                       env=env, cwd=scratch)
    assert pulled.returncode == 0, pulled
    listed = any_capsa("cache", "list", env=env, cwd=scratch)
    assert re.match(r"There are 1 container file\(s\) using [\d.]+ MiB and 3 oci blob "
                    r"file\(s\) using [\d.]+ MiB of space\n", listed.stdout), listed
    verbose = any_capsa("cache", "list", "-v", "-T", "blob", env=env, cwd=scratch)
    assert verbose.stdout.startswith("NAME ")
    assert verbose.stdout.count(" blob\n") == 3
    assert "container file(s)" not in verbose.stdout
    only_oci = any_capsa("cache", "list", "-T", "oci", env=env, cwd=scratch)
    assert only_oci.stdout.startswith("There are 1 container file(s)")
    dry = any_capsa("cache", "clean", "-n", env=env, cwd=scratch)
    assert "User requested a dry run" in dry.stdout
    assert "Removing oci-tmp cache entry" in dry.stderr
    assert list((scratch / "cache" / "cache" / "oci-tmp").iterdir())
    kept = any_capsa("cache", "clean", "--days", "3", "-f", env=env, cwd=scratch)
    assert kept.returncode == 0
    assert list((scratch / "cache" / "cache" / "oci-tmp").iterdir())
    cancelled = any_capsa("cache", "clean", env=env, cwd=scratch, input="n\n")
    assert "Do you want to continue? [y/N]" in cancelled.stdout
    assert list((scratch / "cache" / "cache" / "oci-tmp").iterdir())
    cleaned = any_capsa("cache", "clean", "-f", env=env, cwd=scratch)
    assert cleaned.returncode == 0, cleaned
    assert "INFO:    Removing blob cache entry: blobs" in cleaned.stderr
    assert not list((scratch / "cache" / "cache" / "oci-tmp").iterdir())
    again = any_capsa("pull", "--no-https", "c.sif", images.ref("test/busybox:latest"),
                      env=env, cwd=scratch)
    assert again.returncode == 0, again
    assert "Using cached SIF image" not in again.stderr


def test_bad_type(capsa: Capsa, scratch: Path) -> None:
    result = capsa("cache", "list", "-T", "bogus", env=_env(scratch), cwd=scratch)
    assert result.returncode == 255
    assert "not a valid cache type" in result.stderr
