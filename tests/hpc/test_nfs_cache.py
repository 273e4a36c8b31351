"""The cache on NFS, as clusters share it: its record locks hold across
processes there, and ranks pulling one uncached image at once download each
blob once.

It needs a directory on an NFS mount: ``CAPSA_TEST_NFS_DIR`` (writable by
root and the test user; a loopback export of ``nfs-kernel-server`` does).
Without one it skips, saying why; on the development VM the kernel has no
NFS at all (no ``nfs`` in ``/proc/filesystems``: network filesystems are
configured out and modules cannot be loaded), so no export can be mounted.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.hpc.conftest import launched, rank_env
from tests.hpc.test_many import _push_layout
from tests.pulling.test_cache_locks import _probe

from capsa.content import ContentCache
from support import ocibuild
from support.cli import Capsa
from support.registry import HostileRegistry, hostile_registry  # noqa: F401  (fixture)
from support.strict import expected

pytestmark = [pytest.mark.needs_userns, pytest.mark.slow]

NFS_DIR = os.environ.get("CAPSA_TEST_NFS_DIR", "")


def _unavailable() -> str | None:
    kinds = Path("/proc/filesystems").read_text().split()
    if "nfs" not in kinds and "nfs4" not in kinds:
        return ("this kernel has no NFS client (no nfs in /proc/filesystems), so no "
                "loopback NFS export can be mounted")
    if not NFS_DIR:
        return "set CAPSA_TEST_NFS_DIR to a directory on an NFS mount to run the NFS tests"
    kind = subprocess.run(["stat", "-f", "-c", "%T", NFS_DIR], capture_output=True,
                          text=True).stdout.strip()
    if not kind.startswith("nfs"):
        return f"CAPSA_TEST_NFS_DIR={NFS_DIR} is on {kind or 'nothing'}, not NFS"
    return None


@pytest.fixture
def on_nfs() -> Iterator[Path]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(expected(reason))  # NFS needs a server and a client kernel
    path = Path(tempfile.mkdtemp(prefix="capsa-nfs-", dir=NFS_DIR))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def test_record_locks_hold_on_nfs(on_nfs: Path) -> None:
    cache = ContentCache(on_nfs / "cache")
    cache.ensure()
    with cache.lock("sif-k"):
        assert not _probe(on_nfs / "cache" / ".locks" / "sif-k")


def test_ranks_pull_once_into_a_cache_on_nfs(capsa_user: Capsa, on_nfs: Path,
                                             hostile_registry: HostileRegistry,  # noqa: F811
                                             scratch: Path) -> None:
    name = f"hpc/nfs-{os.urandom(4).hex()}"
    _push_layout(hostile_registry, ocibuild.busybox_layout(scratch / "layout", "1"), name, "1")
    (scratch / "tmp").mkdir(mode=0o1777)
    (scratch / "tmp").chmod(0o1777)
    env = rank_env(capsa_user, scratch / "tmp", {"APPTAINER_CACHEDIR": str(on_nfs),
                                                 "APPTAINER_NOHTTPS": "1"})
    result = launched(capsa_user, ["mpirun", "--oversubscribe", "-np", "8"], "exec",
                      f"docker://{hostile_registry.host}/{name}:1", "true", env=env,
                      cwd=scratch, timeout=600)
    assert result.returncode == 0, str(result)
    assert (result.stdout + result.stderr).count("Converting OCI blobs to SIF format") == 1
    gets = [p for m, p in hostile_registry.requests
            if m == "GET" and p.startswith(f"/v2/{name}/blobs/")]
    assert len(gets) == len(set(gets)) == 2, gets
