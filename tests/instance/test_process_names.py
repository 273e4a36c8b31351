"""An instance shows in ps as Apptainer's do: its monitor as
``Apptainer instance: USER [NAME]``, its PID 1 as ``appinit``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.instance.conftest import Instances

from support.waiting import until

pytestmark = pytest.mark.needs_userns


def _proc(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return ""


def test_instance_processes_are_named_as_apptainer_names_them(
        quick: Instances, images: dict[str, Path]) -> None:
    user = quick.capsa.user.name
    started = quick("instance", "start", str(images["start_sif"]), "named1")
    assert started.returncode == 0, started
    state = json.loads(quick.state_files()[0].read_text())
    init, monitor = state["pid"], state["ppid"]
    title = f"Apptainer instance: {user} [named1]"
    assert until(lambda: _proc(monitor, "cmdline") == title + "\0")
    assert _proc(monitor, "comm") == "starter\n"
    assert until(lambda: _proc(init, "comm") == "appinit\n")
    assert _proc(init, "cmdline") == "appinit\0"
    found = subprocess.run(["pgrep", "-f", f"^Apptainer instance: {user} \\[named1\\]$"],
                           capture_output=True, text=True)
    assert found.stdout.split() == [str(monitor)]
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(monitor)], capture_output=True,
                        text=True)
    assert ps.stdout.strip() == title
    inside = quick("exec", "instance://named1", "sh", "-c", "cat /proc/1/comm; echo $PWD",
                   env={"PWD": "/nowhere"})
    assert inside.stdout == f"appinit\n{quick.capsa.user.home}\n", inside
    listed = quick("instance", "list", "--json", "named1")
    assert [r["pid"] for r in json.loads(listed.stdout)["instances"]] == [init]
    assert quick("instance", "stop", "named1").returncode == 0
    assert until(lambda: not _proc(monitor, "cmdline").startswith("Apptainer"))
