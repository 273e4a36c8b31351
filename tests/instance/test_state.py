"""The instance state files, names, signals and the list table (no containers)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from capsa.cli.commands.instance import tabulate
from capsa.errors import NotFoundError, UsageError
from capsa.runtime import instance as inst


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("APPTAINER_CONFIGDIR", str(tmp_path))
    return tmp_path


def _record(name: str, ppid: int, start: int | None) -> inst.Instance:
    err, out = inst.log_paths(name)
    return inst.Instance(name=name, pid=ppid, ppid=ppid, image="/img.sif", user="u",
                         userns=True, log_err=err, log_out=out, path=inst.state_path(name),
                         start_time=start if start is not None else -1)


@pytest.mark.parametrize("name", ["web", "a.b-c_d", "X9"])
def test_good_names(name: str) -> None:
    inst.check_name(name)


@pytest.mark.parametrize("name", ["", "a/b", "a b", "ok\n", ".", "..", "é", "a:b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError, match="is not a valid instance name"):
        inst.check_name(name)


def test_paths_follow_apptainer(config: Path) -> None:
    host = os.uname().nodename
    user = inst.user_name(os.getuid())
    assert inst.state_path("web") == f"{config}/instances/app/{host}/{user}/web/web.json"
    assert inst.log_paths("web") == (f"{config}/instances/logs/{host}/{user}/web.err",
                                     f"{config}/instances/logs/{host}/{user}/web.out")


def test_state_round_trip_and_ghosts(config: Path) -> None:
    del config
    alive = _record("alive", os.getpid(), inst.process_start_time(os.getpid()))
    recycled = _record("recycled", os.getpid(), 1)  # same pid, another start time
    inst.write_state(alive)
    inst.write_state(recycled)
    body = json.loads(Path(alive.path).read_text())
    assert {"pid", "ppid", "name", "user", "image", "userns", "ip", "logErrPath",
            "logOutPath"} <= set(body)
    assert inst.list_instances() == [alive]
    assert not os.path.exists(recycled.path)  # the ghost went away
    assert inst.get_instance("alive") == alive
    with pytest.raises(NotFoundError, match="no instance found with name gone"):
        inst.get_instance("gone")
    assert inst.list_instances("al*") == [alive] and inst.list_instances("b*") == []
    assert inst.list_instances("../x") == []


def test_unreadable_state_is_skipped(config: Path) -> None:
    del config
    path = Path(inst.state_path("junk"))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert inst.list_instances() == []


@pytest.mark.parametrize(("text", "number"), [("TERM", 15), ("sigint", 2), ("9", 9),
                                               ("SIGUSR1", int(signal.SIGUSR1))])
def test_signals(text: str, number: int) -> None:
    assert inst.parse_signal(text) == number


@pytest.mark.parametrize("text", ["NOPE", "0", "999", ""])
def test_bad_signals(text: str) -> None:
    with pytest.raises(UsageError):
        inst.parse_signal(text)


def test_table_pads_like_tabwriter() -> None:
    rows = [["INSTANCE NAME", "PID", "IP", "IMAGE"], ["web", "12345", "", "/a.sif"]]
    assert tabulate(rows) == ("INSTANCE NAME    PID      IP    IMAGE\n"
                              "web              12345          /a.sif\n")


def test_process_start_time_of_gone_process() -> None:
    assert inst.process_start_time(2**22 + 12345) is None
    assert inst.process_start_time(os.getpid()) is not None


@pytest.mark.parametrize("body", ['{"name": "x", "pid": 1e400, "ppid": 1}',
                                  '{"name": "x", "pid": ' + "[" * 5000 + "]" * 5000 + "}",
                                  "fifo"])
def test_forged_state_files_are_ignored(tmp_path: Path, body: str) -> None:
    """Root lists every user's instances: a state file a user forged (huge
    numbers, deep nesting, a FIFO) is skipped, never a crash or a hang."""
    path = tmp_path / "x.json"
    if body == "fifo":
        os.mkfifo(path)
    else:
        path.write_text(body)
    assert inst._read_state(str(path)) is None
