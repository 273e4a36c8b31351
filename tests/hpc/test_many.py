"""Many ranks at once on one node, as ``mpirun --oversubscribe -np 64``
starts them: 64 ``capsa exec`` of one SIF, and 64 ``capsa exec docker://``
of an image not in the cache yet.  As the test user (the rootless case, the
one that starts FUSE servers), bounded to these two runs: this VM has two
cores."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from tests.hpc.conftest import launched, rank_env, settled, squashfuse_count

from support import ocibuild
from support.cli import Capsa
from support.registry import HostileRegistry, hostile_registry  # noqa: F401  (fixture)

pytestmark = [pytest.mark.needs_userns, pytest.mark.slow]

RANKS = 64


@pytest.fixture
def tmp_scratch(scratch: Path) -> Path:
    (scratch / "tmp").mkdir(mode=0o1777)
    (scratch / "tmp").chmod(0o1777)
    return scratch


def _mpirun(capsa: Capsa, scratch: Path, *args: str, env: dict[str, str] | None = None
            ) -> str:
    result = launched(capsa, ["mpirun", "--oversubscribe", "-np", str(RANKS)], "exec", *args,
                      env=rank_env(capsa, scratch / "tmp", env), cwd=scratch, timeout=600)
    assert result.returncode == 0, str(result)
    assert settled(scratch / "tmp", str(scratch), timeout=60) == []
    return result.stdout + result.stderr


class _Peak:
    """The most FUSE servers of one image seen at once, sampled meanwhile."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.most = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.is_set():
            self.most = max(self.most, squashfuse_count(self.image))
            time.sleep(0.05)

    def __enter__(self) -> _Peak:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.thread.join()


def test_64_ranks_of_one_sif(capsa_user: Capsa, images: dict[str, Path],
                             tmp_scratch: Path) -> None:
    """All succeed, one container (one FUSE server) serves them all, and
    nothing is left.  The ranks wait for each other (two minutes at most),
    so that all run at once however slowly this VM starts them."""
    image = images["sif"]
    with _Peak(image) as peak:
        output = _mpirun(capsa_user, tmp_scratch, "-B", f"{tmp_scratch}:/s", str(image), "sh",
                         "-c", "readlink /proc/self/ns/user > /s/rank.$OMPI_COMM_WORLD_RANK; "
                         f"i=0; while [ $(ls /s | grep -c rank) -lt {RANKS} ] && "
                         "[ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done")
    ranks = list(tmp_scratch.glob("rank.*"))
    assert len(ranks) == RANKS, output
    assert len({path.read_text() for path in ranks}) == 1, output
    assert peak.most <= 1, output  # none if another test closed /dev/fuse meanwhile


def _push_layout(registry: HostileRegistry, layout: Path, name: str, tag: str) -> None:
    """Every blob of an OCI layout, and its one manifest under *tag*."""
    blobs = {f"sha256:{path.name}": path.read_bytes()
             for path in (layout / "blobs" / "sha256").iterdir()}
    index = json.loads((layout / "index.json").read_text())
    manifest = blobs[index["manifests"][0]["digest"]]
    registry.push_raw(name, manifest, blobs, reference=tag)


def test_64_ranks_of_an_uncached_docker_image(capsa_user: Capsa,
                                              hostile_registry: HostileRegistry,  # noqa: F811
                                              tmp_scratch: Path) -> None:
    """One download of each blob, one conversion: the others wait on the
    cache's lock and use what the first one made.  (The in-process registry
    counts the requests.)"""
    name = f"hpc/many-{os.urandom(4).hex()}"
    _push_layout(hostile_registry, ocibuild.busybox_layout(tmp_scratch / "layout", "1"),
                 name, "1")
    cache = tmp_scratch / "cache"
    output = _mpirun(capsa_user, tmp_scratch, f"docker://{hostile_registry.host}/{name}:1",
                     "true", env={"APPTAINER_CACHEDIR": str(cache), "APPTAINER_NOHTTPS": "1"})
    assert output.count("Converting OCI blobs to SIF format") == 1, output
    blob_gets = [path for method, path in hostile_registry.requests
                 if method == "GET" and path.startswith(f"/v2/{name}/blobs/")]
    assert len(blob_gets) == 2, blob_gets  # the config and the one layer
    assert len(list((cache / "cache" / "oci-tmp").iterdir())) == 1
