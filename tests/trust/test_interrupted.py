"""Problem 5: interrupted work leaves nothing behind.

A pull is stopped while it converts (its scratch directory holds a partial
squashfs): by SIGTERM and SIGHUP (what Slurm sends on ``scancel``, at a time
limit, when a terminal goes), by SIGINT, and by SIGKILL.  The first three
must leave nothing at all; what SIGKILL leaves must be recognised (ours, old
enough, nobody holding its lock) and removed by the next run or by ``cache
clean``.  Likewise a build stopped in ``%post``, an ``exec`` stopped as it
starts, and an ``exec`` killed outright (its session directory, its extracted
sandbox).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from tests.runtime.conftest import spawn

from support import ocibuild
from support.cli import Capsa
from support.registry import Registry
from support.waiting import until
from trust import figures
from trust.conftest import marked_sif

pytestmark = pytest.mark.needs_userns

BIG = "trust/big:latest"


@pytest.fixture(scope="module")
def big_image(plain_registry: Registry) -> str:
    """An image whose conversion takes a moment: 64 MiB that do not compress."""
    from capsa.registry import host_platform

    members = [*ocibuild.busybox_members(),
               ocibuild.Member("big", "dir", mode=0o755),
               ocibuild.Member("big/noise", data=os.urandom(64 << 20))]
    image = ocibuild.image([ocibuild.layer(members, "plain")],
                           arch=host_platform().architecture)
    plain_registry.push_raw("trust/big", image.manifest,
                            [image.config, *(layer.blob for layer in image.layers)])
    return plain_registry.ref(BIG)


def _scratch(tmp: Path, cache: Path) -> list[str]:
    """What an interrupted run may have left: scratch directories in *tmp*,
    temporary files in the cache."""
    found = sorted(p.name for p in tmp.iterdir())
    for kind in ("blob/blobs/sha256", "oci-tmp", "oras"):
        directory = cache / "cache" / kind
        if directory.is_dir():
            found += [f"{kind}/{p.name}" for p in directory.iterdir()
                      if p.name.startswith(".")]
    return found


def _converting(tmp: Path) -> bool:
    return any((d / "rootfs.sqfs").exists() for d in tmp.glob("capsa-pull-*"))


def _backdate(tmp: Path, cache: Path, seconds: float = 3600) -> None:
    """Make what a killed run left look old (the sweep leaves young things to
    their maker, which may still be starting)."""
    past = time.time() - seconds
    for path in [*tmp.iterdir(), *(cache / "cache").rglob(".*")]:
        os.utime(path, (past, past), follow_symlinks=False)


def _private(path: Path) -> Path:
    """A directory for test images, beside (not in) the run's TMPDIR."""
    path.mkdir(mode=0o755)
    return path


def _dirs(capsa: Capsa, scratch: Path) -> tuple[Path, Path, dict[str, str]]:
    tmp, cache = scratch / "tmp", scratch / "cache"
    for path in (tmp, cache):
        path.mkdir()
        os.chown(path, capsa.user.uid, capsa.user.gid)
    return tmp, cache, {"TMPDIR": str(tmp), "APPTAINER_CACHEDIR": str(cache)}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stopped_pull_removes_its_scratch(any_capsa: Capsa, big_image: str, scratch: Path,
                                            signum: int) -> None:
    tmp, cache, env = _dirs(any_capsa, scratch)
    pull = spawn(any_capsa, "pull", "--no-https", str(scratch / "big.sif"), big_image,
                 env=env, cwd=str(scratch))
    assert until(lambda: _converting(tmp) or pull.poll() is not None, timeout=60), "never converted"
    pull.send_signal(signum)
    _, err = pull.communicate(timeout=120)
    left = _scratch(tmp, cache)
    figures.add("interrupted", 1, len(left))
    assert pull.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    assert left == [] and not (scratch / "big.sif").exists(), left


def test_what_a_killed_pull_leaves_goes_next_time(any_capsa: Capsa, big_image: str,
                                                  scratch: Path) -> None:
    tmp, cache, env = _dirs(any_capsa, scratch)
    left_after = []
    for cleaner in (["cache", "clean", "-f"],
                    ["pull", "--force", "--no-https", "again.sif", big_image]):
        pull = spawn(any_capsa, "pull", "--no-https", str(scratch / "big.sif"), big_image,
                     env=env, cwd=str(scratch))
        assert until(lambda: _converting(tmp), timeout=60), "never converted"
        pull.kill()
        pull.communicate(timeout=60)
        assert any(n.startswith("capsa-pull-") for n in _scratch(tmp, cache))
        again = any_capsa(*cleaner, env=env, cwd=scratch)  # too young to be swept
        assert again.returncode == 0, again
        assert any(n.startswith("capsa-pull-") for n in _scratch(tmp, cache)), again
        _backdate(tmp, cache)
        again = any_capsa(*cleaner, env=env, cwd=scratch)
        assert again.returncode == 0, again
        left_after.append(_scratch(tmp, cache))
        figures.add("interrupted", 1, len(left_after[-1]))
    assert left_after == [[], []]


def test_a_stopped_build_removes_its_scratch(any_capsa: Capsa, scratch: Path) -> None:
    tmp, cache, env = _dirs(any_capsa, scratch)
    base = marked_sif(_private(scratch / "base"), "base")
    definition = scratch / "slow.def"
    # exec: a shell would leave its sleep running (and holding our pipes)
    definition.write_text(f"Bootstrap: localimage\nFrom: {base}\n\n%post\n    exec sleep 300\n")
    build = spawn(any_capsa, "build", str(scratch / "slow.sif"), str(definition), env=env,
                  cwd=str(scratch))
    assert until(lambda: any(tmp.glob("capsa-session-*")), timeout=60), "%post never started"
    build.send_signal(signal.SIGTERM)
    _, err = build.communicate(timeout=120)
    left = _scratch(tmp, cache)
    figures.add("interrupted", 1, len(left))
    assert build.returncode == 128 + signal.SIGTERM, err
    assert left == [] and not (scratch / "slow.sif").exists(), (left, err)


@pytest.mark.parametrize("extract", [False, True], ids=["mounted", "extracted"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_an_exec_stopped_as_it_starts_removes_its_session(any_capsa: Capsa, scratch: Path,
                                                          signum: int, extract: bool) -> None:
    """Stopped the moment its session directory appears, while it still sets
    the container up (or just after: then the container gets the signal);
    through FUSE and without it (the image extracted to a sandbox)."""
    tmp, cache, env = _dirs(any_capsa, scratch)
    image = marked_sif(_private(scratch / "image"), "stopped")
    flags = ["--unsquash"] if extract else []
    running = spawn(any_capsa, "exec", *flags, str(image), "sleep", "300", env=env,
                    cwd=str(scratch))
    assert until(lambda: any(tmp.glob("capsa-session-*")), timeout=60), "never started"
    running.send_signal(signum)
    _, err = running.communicate(timeout=60)
    left = _scratch(tmp, cache)
    figures.add("interrupted", 1, len(left))
    assert running.returncode in (128 + signum, -signum), err
    assert left == [], (left, err)


@pytest.mark.parametrize("extract", [False, True], ids=["mounted", "extracted"])
def test_what_a_killed_exec_leaves_goes_next_time(any_capsa: Capsa, scratch: Path,
                                                  extract: bool) -> None:
    tmp, cache, env = _dirs(any_capsa, scratch)
    image = marked_sif(_private(scratch / "image"), "killed")
    flags = ["--unsquash"] if extract else []
    running = spawn(any_capsa, "exec", *flags, str(image), "sleep", "300", env=env,
                    cwd=str(scratch))
    started = "capsa-sandbox-*/root" if extract else "capsa-session-*"
    assert until(lambda: any(tmp.glob(started)), timeout=60), "never started"
    time.sleep(0.5)
    running.kill()
    running.communicate(timeout=60)  # its container died with it: nothing holds our pipes
    assert _scratch(tmp, cache) != []
    _backdate(tmp, cache)
    again = any_capsa("exec", str(image), "true", env=env, cwd=scratch)
    assert again.returncode == 0, again
    left = _scratch(tmp, cache)
    figures.add("interrupted", 1, len(left))
    assert left == []
