"""The instance command lines of spython and singularity-compose, and the
output they parse (shared/docs/clients.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.instance.conftest import Instances

pytestmark = pytest.mark.needs_userns


def test_spython_flow(quick: Instances, images: dict[str, Path], scratch: Path) -> None:
    data = scratch / "data"
    data.mkdir(mode=0o755)
    (data / "in.txt").write_text("shared\n")
    # Instance.start: `singularity instance start [options] IMG NAME [args]`
    start = quick("instance", "start", "--bind", f"{data}:/data", str(images["start_sif"]),
                  "spy", "arg1")
    assert start.returncode == 0, str(start)
    # right after, `instance list --json NAME`, exit 0, to learn the pid
    listing = quick("instance", "list", "--json", "spy")
    assert listing.returncode == 0
    (row,) = json.loads(listing.stdout)["instances"]
    assert row["instance"] == "spy" and isinstance(row["pid"], int) and row["pid"] > 0
    # exec into it: the job's stdout only, nothing on stderr
    out = quick("exec", "instance://spy", "cat", "/data/in.txt")
    assert (out.returncode, out.stdout, out.stderr) == (0, "shared\n", "")
    # Instance.stop: `singularity instance stop [-t SECONDS] NAME`
    stop = quick("instance", "stop", "-t", "10", "spy")
    assert stop.returncode == 0, str(stop)
    empty = quick("instance", "list", "--json")
    assert (empty.returncode, json.loads(empty.stdout)) == (0, {"instances": []})


def test_singularity_compose_flow(quick: Instances, images: dict[str, Path]) -> None:
    start = quick("--quiet", "instance", "start", "--hostname", "app1", "--writable-tmpfs",
                  str(images["start_sif"]), "app1")
    assert (start.returncode, start.stderr) == (0, ""), str(start)
    names = [r["instance"] for r in
             json.loads(quick("instance", "list", "--json").stdout)["instances"]]
    assert names == ["app1"]
    ran = quick("run", "instance://app1")
    assert (ran.returncode, ran.stdout) == (0, "runscript args: \n"), str(ran)
    logs = json.loads(quick("instance", "list", "--json").stdout)["instances"][0]
    assert Path(logs["logOutPath"]).read_text().startswith("startscript args:")
    assert Path(logs["logErrPath"]).exists()
