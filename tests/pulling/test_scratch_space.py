"""Where a pull's scratch goes, and running out of space for real (a small
tmpfs): one FATAL naming the directory and the variable to set, nothing
left behind."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.cli import Capsa, Result
from support.tmpfs import leftovers, small_tmpfs

BUSYBOX = "test/busybox:latest"


def _fatal(result: Result) -> str:
    assert result.returncode == 255, result
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL:")]
    assert len(fatal) == 1 and "Traceback" not in result.stderr, result
    return fatal[0]


def _partial_blobs(cache: Path) -> list[str]:
    """Blobs in the cache whose content does not match their name (the
    verified ones that did fit, the config, may stay: pull's contract)."""
    import hashlib

    blobs = cache / "cache" / "blob" / "blobs" / "sha256"
    return [p.name for p in blobs.rglob("*") if p.is_file()
            and hashlib.sha256(p.read_bytes()).hexdigest() != p.name]


@pytest.mark.parametrize("cache", ["cache", "no-cache"])
def test_tmpdir_full(any_capsa: Capsa, images: Any, scratch: Path, cache: str) -> None:
    with small_tmpfs("256k") as small:
        env = {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(small)}
        flags = ["--disable-cache"] if cache == "no-cache" else []
        result = any_capsa("pull", "--no-https", *flags, "out.sif", images.ref(BUSYBOX),
                           cwd=scratch, env=env)
        line = _fatal(result)
        assert f"no space left on device in {small}: set APPTAINER_TMPDIR" in line, result
        assert leftovers(small) == []
    assert not (scratch / "out.sif").exists()


def test_cache_full(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    with small_tmpfs("256k") as small:
        env = {"APPTAINER_CACHEDIR": str(small), "APPTAINER_TMPDIR": str(scratch)}
        result = any_capsa("pull", "--no-https", "out.sif", images.ref(BUSYBOX),
                           cwd=scratch, env=env)
        line = _fatal(result)
        assert f"no space left on device in {small}" in line, result
        assert "set APPTAINER_CACHEDIR" in line, result
        assert _partial_blobs(small) == []
        temporary = [p for p in leftovers(small) if Path(p).name.startswith(".tmp")]
        assert temporary == [], leftovers(small)
    assert not (scratch / "out.sif").exists()
    assert [p.name for p in scratch.iterdir()] == []


def test_destination_full(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    with small_tmpfs("256k") as small:
        env = {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(scratch)}
        result = any_capsa("pull", "--no-https", str(small / "out.sif"), images.ref(BUSYBOX),
                           cwd=scratch, env=env)
        line = _fatal(result)
        assert line.endswith(f"no space left on device in {small}"), result
        assert leftovers(small) == []


def test_tmp_on_tmpfs_means_var_tmp(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    """No variable set and /tmp a (here: far too small) tmpfs: scratch goes to
    /var/tmp, so the pull works; with TMPDIR=/tmp it runs out of space there."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    env = {"APPTAINER_CACHEDIR": str(scratch / "cache")}
    pull = any_capsa.argv("pull", "--no-https", "--disable-cache", "out.sif",
                          images.ref(BUSYBOX))
    # A mount namespace with a 64 KiB tmpfs on /tmp: as root directly; as the
    # user in a user namespace that maps only their own ids (so capsa still
    # runs as that uid), with the capabilities kept to mount the tmpfs.
    mount = "mount -t tmpfs -o size=64k,mode=1777 none /tmp"
    script = f"{mount} && exec {' '.join(shlex.quote(a) for a in pull)}"
    if any_capsa.user.is_root:
        argv = ["unshare", "--mount", "sh", "-c", script]
    else:
        uid = any_capsa.user.uid
        argv = any_capsa.user.wrap(["env", *_assignments(any_capsa, env), "unshare", "--user",
                                    f"--map-user={uid}", f"--map-group={any_capsa.user.gid}",
                                    "--keep-caps", "--mount", "sh", "-c", script])
    full = any_capsa.full_env(env)
    ok = subprocess.run(argv, cwd=scratch, env=full if any_capsa.user.is_root else None,
                        capture_output=True, text=True, timeout=120)
    if "--keep-caps" in argv and "unrecognized option" in ok.stderr:
        pytest.skip("unshare(1) lacks --keep-caps")
    assert ok.returncode == 0, ok.stderr
    assert (scratch / "out.sif").is_file()
    (scratch / "out.sif").unlink()
    argv[-1] = script.replace("exec ", "exec env TMPDIR=/tmp ", 1)
    bad = subprocess.run(argv, cwd=scratch, env=full if any_capsa.user.is_root else None,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 255, bad.stderr
    assert "no space left on device in /tmp: set APPTAINER_TMPDIR" in bad.stderr, bad.stderr


def _assignments(capsa: Capsa, env: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in capsa.full_env(env).items()]
