"""instance start / list / stop, through the CLI, as root and as the test
user, with FUSE (a loop device as root) and with the extraction fallback;
and nothing left behind afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from tests.instance.conftest import Instances, footprint

from support.cli import Capsa
from support.site import wants_site
from support.waiting import until

pytestmark = pytest.mark.needs_userns


def _baseline(images: dict[str, Path]) -> tuple[int, int, int]:
    return footprint(images["start_sif"].parent)


def _assert_clean(inst: Instances, images: dict[str, Path],
                  before: tuple[int, int, int]) -> None:
    assert until(lambda: _baseline(images) == before), (_baseline(images), before)
    assert inst.state_files() == []
    assert inst.leftovers() == []
    assert inst.names() == []


def test_start_list_exec_stop(instances: Instances, images: dict[str, Path]) -> None:
    before = _baseline(images)
    image = str(images["start_sif"])
    started = instances("instance", "start", image, "web", "one", "two words")
    assert started.returncode == 0, str(started)
    assert started.stderr == "INFO:    instance started successfully\n"
    assert started.stdout == ""

    listing = instances("instance", "list")
    assert listing.returncode == 0
    header, row = listing.stdout.splitlines()
    assert header.split() == ["INSTANCE", "NAME", "PID", "IP", "IMAGE"]
    name, pid, img = row.split()
    assert (name, img) == ("web", image)

    data = json.loads(instances("instance", "list", "--json").stdout)
    assert list(data) == ["instances"]
    (entry,) = data["instances"]
    assert list(entry) == ["instance", "pid", "img", "ip", "logErrPath", "logOutPath"]
    assert (entry["instance"], entry["pid"], entry["img"]) == ("web", int(pid), image)
    logs = instances.host_dir("logs")
    assert entry["logOutPath"] == str(logs / "web.out")
    assert entry["logErrPath"] == str(logs / "web.err")
    assert until(lambda: "startscript args: one two words" in Path(entry["logOutPath"])
                 .read_text())
    state = json.loads((instances.host_dir("app") / "web" / "web.json").read_text())
    assert state["pid"] == int(pid) and state["name"] == "web" and state["image"] == image

    # the same PID namespace: PID 1 is the instance's init, the startscript runs
    ps = instances("exec", "instance://web", "ps")
    assert ps.returncode == 0, str(ps)
    assert re.search(r"^\s*1\s", ps.stdout, re.M), ps.stdout
    assert "sleep 600" in ps.stdout
    assert instances("exec", "instance://web", "sh", "-c", "echo $$").stdout.strip() != ""
    assert int(instances("exec", "instance://web", "sh", "-c", "echo $$").stdout) < 20

    # while it runs, the instance holds its image (squashfuse or a loop
    # device) and a session directory in TMPDIR: what must go at the end
    if not wants_site(instances.env):  # not the site that never mounts images
        assert _baseline(images) != before
    assert instances.leftovers() != []

    stopped = instances("instance", "stop", "web")
    assert stopped.returncode == 0, str(stopped)
    assert stopped.stderr == f"INFO:    Stopping web instance of {image} (PID={pid})\n"
    _assert_clean(instances, images, before)


def test_failing_startscript_ends_the_instance(instances: Instances,
                                              images: dict[str, Path]) -> None:
    before = _baseline(images)
    started = instances("instance", "start", str(images["start_sif"]), "short", "exit", "3")
    assert started.returncode == 0, str(started)
    assert until(lambda: instances.names() == [])
    _assert_clean(instances, images, before)


def test_startscript_exiting_zero_keeps_it(quick: Instances, images: dict[str, Path]) -> None:
    assert quick("instance", "start", str(images["start_sif"]), "svc", "quit").returncode == 0
    assert until(lambda: "startscript args: quit" in
                 (quick.host_dir("logs") / "svc.out").read_text())
    assert quick.names() == ["svc"]
    assert quick("exec", "instance://svc", "true").returncode == 0
    assert quick("instance", "stop", "svc").returncode == 0
    assert quick.names() == []


def test_image_without_startscript_stays(quick: Instances, images: dict[str, Path]) -> None:
    before = _baseline(images)
    assert quick("instance", "start", str(images["sif"]), "plain").returncode == 0
    assert quick.names() == ["plain"]
    out = quick("exec", "instance://plain", "cat", "/proc/1/cmdline")
    assert out.returncode == 0, str(out)
    assert out.stdout == "appinit\0"  # PID 1 is the instance's init
    assert quick("instance", "stop", "plain").returncode == 0
    _assert_clean(quick, images, before)


def test_instance_run_runs_the_runscript(quick: Instances, images: dict[str, Path]) -> None:
    assert quick("instance", "run", str(images["sif"]), "runner", "x", "y").returncode == 0
    assert until(lambda: "runscript args: x y" in
                 (quick.host_dir("logs") / "runner.out").read_text())
    assert quick("instance", "stop", "runner").returncode == 0


def test_bad_and_reused_names(quick: Instances, images: dict[str, Path]) -> None:
    image = str(images["start_sif"])
    for bad in ("a/b", "with space", "", "é"):
        result = quick("instance", "start", image, bad)
        assert result.returncode == 255, str(result)
        assert result.stderr == f"FATAL:   {bad} is not a valid instance name\n"
    assert quick("instance", "start", image, "dup").returncode == 0
    again = quick("instance", "start", image, "dup")
    assert again.returncode == 255
    assert again.stderr == "FATAL:   instance dup already exists\n"
    assert quick.names() == ["dup"]
    missing = quick("instance", "start", image)
    assert missing.returncode == 255 and "requires at least 2 arg(s)" in missing.stderr


def test_setup_failure_is_reported_and_cleaned(instances: Instances,
                                               images: dict[str, Path]) -> None:
    before = _baseline(images)
    result = instances("instance", "start", "--pwd", "/nope", str(images["start_sif"]), "bad")
    assert result.returncode == 255
    assert result.stderr.startswith("FATAL:   failed to start instance: ")
    assert "/nope" in result.stderr
    _assert_clean(instances, images, before)


def test_errors_before_starting(quick: Instances, images: dict[str, Path],
                                scratch: Path) -> None:
    missing = quick("instance", "start", str(scratch / "nope.sif"), "x")
    assert missing.returncode == 255 and "could not open image" in missing.stderr
    bind = quick("instance", "start", "-B", "/no/such:/x", str(images["sif"]), "x")
    assert bind.returncode == 255 and "/no/such" in bind.stderr
    assert quick.names() == [] and quick.leftovers() == []


def test_pid_file(quick: Instances, images: dict[str, Path], scratch: Path) -> None:
    pid_file = scratch / "pid"
    result = quick("instance", "start", "--pid-file", str(pid_file), str(images["sif"]), "p")
    assert result.returncode == 0, str(result)
    data = json.loads(quick("instance", "list", "--json", "p").stdout)
    assert pid_file.read_text() == f"{data['instances'][0]['pid']}\n"


def test_list_formats(quick: Instances, images: dict[str, Path]) -> None:
    empty = quick("instance", "list", "--json")
    assert (empty.returncode, json.loads(empty.stdout)) == (0, {"instances": []})
    assert quick("instance", "list").stdout == "INSTANCE NAME    PID    IP    IMAGE\n"
    for name in ("alpha", "beta"):
        assert quick("instance", "start", str(images["sif"]), name).returncode == 0
    assert quick.names() == ["alpha", "beta"]
    assert [r["instance"] for r in json.loads(
        quick("instance", "list", "-j", "al*").stdout)["instances"]] == ["alpha"]
    logs = quick("instance", "list", "-l", "beta").stdout.splitlines()
    assert logs[0].split() == ["INSTANCE", "NAME", "PID", "LOGS"]
    assert logs[1].split()[0] == "beta" and logs[1].endswith("beta.err")
    assert logs[2].startswith(" ") and logs[2].endswith("beta.out")
    both = quick("instance", "list", "-j", "-l")
    assert both.returncode == 255


@pytest.mark.needs_root
def test_default_state_location(capsa: Capsa, capsa_user: Capsa,
                                images: dict[str, Path]) -> None:
    """~/.apptainer/instances/{app,logs}/<host>/<user>/...; root reaches a
    user's instances with -u.  (In the user's real home, which root's -u
    reads: the logs, which outlive the instance, are removed afterwards.)"""
    home, user = capsa_user.user.home, capsa_user.user.name
    env = {"HOME": str(home)}
    host = os.uname().nodename
    name = f"home-{os.getpid()}"
    state = home / ".apptainer/instances/app" / host / user / name
    logs = home / ".apptainer/instances/logs" / host / user
    made = _missing_parents(state) + _missing_parents(logs / name)
    try:
        assert capsa_user("instance", "start", str(images["sif"]), name,
                          env=env).returncode == 0
        assert (state / f"{name}.json").is_file()
        assert (logs / f"{name}.err").is_file() and (logs / f"{name}.out").is_file()
        listed = capsa("instance", "list", "--json", "-u", user, name)
        assert [r["instance"] for r in json.loads(listed.stdout)["instances"]] == [name]
        assert capsa("instance", "stop", "-u", user, name).returncode == 0
    finally:
        capsa_user("instance", "stop", "-F", name, env=env)
        for log in (logs / f"{name}.err", logs / f"{name}.out"):
            log.unlink(missing_ok=True)
        for directory in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
            shutil.rmtree(directory, ignore_errors=True)
    assert not state.exists()


def _missing_parents(path: Path) -> list[Path]:
    """The directories above *path* that do not exist yet (to remove later)."""
    return [parent for parent in path.parents if not parent.exists()]
