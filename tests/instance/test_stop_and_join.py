"""instance stop (-a, -F, -s, -t), exec|run|shell instance://NAME, and what
happens when an instance's monitor dies."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from tests.instance.conftest import Instances, footprint

from support.waiting import until

pytestmark = pytest.mark.needs_userns


def _pid(inst: Instances, name: str) -> int:
    rows = json.loads(inst("instance", "list", "--json", name).stdout)["instances"]
    return int(rows[0]["pid"])


def test_stop_signal_force_and_all(quick: Instances, images: dict[str, Path]) -> None:
    image = str(images["start_sif"])
    for name in ("a1", "a2", "b1", "c1"):
        assert quick("instance", "start", image, name).returncode == 0
    term = quick("instance", "stop", "-s", "TERM", "a1")
    assert term.returncode == 0, str(term)
    assert quick.names() == ["a2", "b1", "c1"]
    forced = quick("instance", "stop", "-F", "b*")
    assert forced.returncode == 0, str(forced)
    assert "Stopping b1 instance" in forced.stderr
    assert quick.names() == ["a2", "c1"]
    assert quick("instance", "stop", "-s", "15", "a2").returncode == 0
    everything = quick("instance", "stop", "--all")
    assert everything.returncode == 0
    assert everything.stderr.startswith("INFO:    Stopping c1 instance of ")
    assert quick.names() == [] and quick.state_files() == [] and quick.leftovers() == []
    none = quick("instance", "stop", "-a")
    assert (none.returncode, none.stderr) == (255, "FATAL:   no instance found\n")


def test_stop_usage_errors(quick: Instances) -> None:
    assert quick("instance", "stop").returncode == 255
    bad = quick("instance", "stop", "-s", "NOPE", "x")
    assert bad.returncode == 255 and "Could not convert stop signal" in bad.stderr
    if not quick.capsa.user.is_root:
        other = quick("instance", "list", "-u", "root")
        assert other.returncode == 255 and "Only root user" in other.stderr


def test_stop_timeout_kills_what_ignores_the_signal(quick: Instances,
                                                   images: dict[str, Path]) -> None:
    assert quick("instance", "start", str(images["start_sif"]), "deaf", "deaf").returncode == 0
    pid = _pid(quick, "deaf")
    result = quick("instance", "stop", "-t", "1", "deaf")
    assert result.returncode == 0, str(result)
    assert result.stderr.splitlines()[-1].startswith("INFO:    Killing deaf instance of ")
    assert result.stderr.splitlines()[-1].endswith(f"(PID={pid}) (Timeout)")
    assert quick.names() == [] and quick.leftovers() == []


def test_stop_signal_reaches_the_command(quick: Instances, images: dict[str, Path]) -> None:
    # USR2 is forwarded to the startscript's sleep, which dies of it: the
    # instance then ends by itself, before any timeout
    assert quick("instance", "start", str(images["start_sif"]), "usr").returncode == 0
    result = quick("instance", "stop", "-s", "SIGUSR2", "-t", "30", "usr")
    assert result.returncode == 0, str(result)
    assert "Killing" not in result.stderr
    assert quick.names() == []


def test_exec_run_shell_in_instance(quick: Instances, images: dict[str, Path],
                                    scratch: Path) -> None:
    data = scratch / "data"
    data.mkdir()
    (data / "hello").write_text("from the host\n")
    os.chmod(data, 0o755)
    started = quick("instance", "start", "--contain", "-B", f"{data}:/data:ro",
                    "--env", "INST_VAR=set at start", str(images["start_sif"]), "j")
    assert started.returncode == 0, str(started)
    out = quick("exec", "instance://j", "cat", "/data/hello")
    assert (out.returncode, out.stdout) == (0, "from the host\n"), str(out)
    # the instance's mounts: --contain gave it an empty /tmp of its own
    mark = f"mark-{os.getpid()}"
    assert quick("exec", "instance://j", "touch", f"/tmp/{mark}").returncode == 0
    assert not (Path("/tmp") / mark).exists()
    assert quick("exec", "instance://j", "ls", f"/tmp/{mark}").returncode == 0
    # status, environment, user
    assert quick("exec", "instance://j", "sh", "-c", "exit 7").returncode == 7
    env = quick("exec", "--env", "JOIN_VAR=joined", "instance://j", "sh", "-c",
                'echo "$FROM_IMAGE|$JOIN_VAR|$(id -u)"')
    assert env.stdout == f"image value|joined|{quick.capsa.user.uid}\n", str(env)
    run = quick("run", "instance://j", "a", "b")
    assert (run.returncode, run.stdout) == (0, "runscript args: a b\n"), str(run)
    shell = quick("shell", "instance://j", "-c", "echo in shell")
    assert shell.stdout == "in shell\n", str(shell)
    missing = quick("exec", "instance://nope", "true")
    assert missing.returncode == 255
    assert missing.stderr == "FATAL:   no instance found with name nope\n"


def test_joined_command_sees_the_instance_pids(quick: Instances,
                                              images: dict[str, Path]) -> None:
    assert quick("instance", "start", str(images["start_sif"]), "pids").returncode == 0
    ls = quick("exec", "instance://pids", "ls", "/proc")
    pids = sorted(int(p) for p in ls.stdout.split() if p.isdigit())
    assert pids[:2] == [1, 2], ls.stdout  # init, then the startscript's sleep
    assert max(pids) < 20


def test_killed_monitor_leaves_a_ghost_that_list_removes(quick: Instances,
                                                        images: dict[str, Path]) -> None:
    before = footprint(images["start_sif"].parent)
    assert quick("instance", "start", str(images["start_sif"]), "ghost").returncode == 0
    state = json.loads(quick.state_files()[0].read_text())
    os.kill(state["ppid"], signal.SIGKILL)
    # the monitor's children die with it (parent-death signal): init, squashfuse
    assert until(lambda: footprint(images["start_sif"].parent) == before)
    assert until(lambda: not os.path.exists(f"/proc/{state['pid']}/ns"))
    assert quick.names() == []
    assert quick.state_files() == []
    assert quick.leftovers() == []  # its empty session directory went with the ghost


def test_namespaces_are_joined(quick: Instances, images: dict[str, Path]) -> None:
    # --hostname (UTS), --network none (net), --writable-tmpfs (one overlay for all)
    started = quick("instance", "start", "--hostname", "box", "--network", "none",
                    "--writable-tmpfs", str(images["start_sif"]), "ns")
    assert started.returncode == 0, str(started)
    out = quick("exec", "instance://ns", "sh", "-c", "hostname; ls /sys/class/net; touch /made")
    assert out.stdout.split() == ["box", "lo"], str(out)
    assert quick("exec", "instance://ns", "ls", "/made").returncode == 0
    state = json.loads(quick.state_files()[0].read_text())  # the host's name, not "box"
    assert state["user"] == quick.capsa.user.name


def test_fakeroot_instance(quick: Instances, images: dict[str, Path]) -> None:
    assert quick("instance", "start", "-f", str(images["start_sif"]), "fr").returncode == 0
    assert quick.names() == ["fr"]  # recorded under the real user, not root
    out = quick("exec", "instance://fr", "id", "-u")
    assert out.stdout == "0\n", str(out)


def test_instance_stops_itself_from_inside(quick: Instances, images: dict[str, Path]) -> None:
    assert quick("instance", "start", str(images["start_sif"]), "self").returncode == 0
    quick("exec", "instance://self", "kill", "1")  # SIGTERM to its init
    assert until(lambda: quick.names() == [])
    assert quick.state_files() == [] and until(lambda: quick.leftovers() == [])


def test_stop_reaches_daemons_left_by_the_startscript(quick: Instances,
                                                     images: dict[str, Path]) -> None:
    assert quick("instance", "start", str(images["start_sif"]), "dmn", "daemon").returncode == 0
    # the startscript has exited; its daemon (orphaned to the instance's init) runs on
    assert until(lambda: "sleep 600" in quick("exec", "instance://dmn", "ps").stdout
                 and "startscript" not in quick("exec", "instance://dmn", "ps").stdout)
    result = quick("instance", "stop", "-s", "TERM", "-t", "30", "dmn")
    assert result.returncode == 0, str(result)
    assert "Killing" not in result.stderr
    assert quick.names() == [] and until(lambda: quick.leftovers() == [])
