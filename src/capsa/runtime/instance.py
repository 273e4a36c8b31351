"""Instances: named, detached containers, and the state files that find them.

An instance is a container whose monitor runs detached (see
:mod:`capsa.runtime.instance_process`).  Its state lives where Apptainer
keeps it, ``~/.apptainer/instances/app/<host>/<user>/<name>/<name>.json``
(``$APPTAINER_CONFIGDIR`` replaces ``~/.apptainer``), with the same JSON
fields, so that tools reading those files keep working; its logs go to
``.../instances/logs/<host>/<user>/<name>.{out,err}``.

``pid`` is the instance's PID 1 (as the host sees it), ``ppid`` the monitor
that owns its mounts.  A state file whose monitor is gone is a ghost and
is removed when listed, as Apptainer does; the monitor's start time,
recorded beside, guards against a recycled PID.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import signal
import time
from typing import NamedTuple

from capsa import report
from capsa.errors import ContainerError, NotFoundError, UsageError

log = report.getLogger("capsa.runtime.instance")

_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
_MAX_STATE = 1 << 20
_POLL = 0.01


class Instance(NamedTuple):
    """One instance's state file."""

    name: str
    pid: int
    ppid: int
    image: str
    user: str
    userns: bool
    log_err: str
    log_out: str
    path: str
    start_time: int
    ip: str = ""
    session: str = ""  # the monitor's session directory (removed with a ghost)
    cgroup: bool = False  # started with resource limits: joins enter its cgroup


def check_name(name: str) -> None:
    # fullmatch: "$" alone would let a trailing newline through; "." and
    # ".." pass Apptainer's pattern but would name directories outside ours
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"{name} is not a valid instance name")


# -- where things are ----------------------------------------------------------

def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def config_dir(user: str | None = None) -> str:
    """``~/.apptainer`` of *user*, or the caller's (:func:`capsa.userdirs.config_dir`)."""
    if user:
        try:
            return os.path.join(pwd.getpwnam(user).pw_dir, ".apptainer")
        except KeyError as err:
            raise NotFoundError(f"user {user} not found") from err
    from capsa.userdirs import config_dir as callers

    return callers()


def _base(kind: str, user: str | None) -> str:
    owner = user or user_name(os.getuid())
    return os.path.join(config_dir(user), "instances", kind, os.uname().nodename, owner)


def state_path(name: str) -> str:
    return os.path.join(_base("app", None), name, f"{name}.json")


def log_paths(name: str) -> tuple[str, str]:
    """(stderr log, stdout log) of instance *name*."""
    base = _base("logs", None)
    return os.path.join(base, f"{name}.err"), os.path.join(base, f"{name}.out")


# -- processes -----------------------------------------------------------------

def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of *pid*; None if it is gone
    or a zombie (whose parent may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_running(instance: Instance) -> bool:
    """Is the monitor of *instance* still the process that wrote its state?"""
    return process_start_time(instance.ppid) == instance.start_time


def has_children(pid: int) -> bool:
    """Does *pid* have child processes (True when this cannot be told)?"""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return bool(handle.read().strip())
    except OSError:
        return True


# -- state files ---------------------------------------------------------------

def write_state(instance: Instance) -> None:
    """Write the state file (temp + rename: readers never see half of it)."""
    directory = os.path.dirname(instance.path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    body = {
        "pid": instance.pid, "ppid": instance.ppid, "name": instance.name,
        "user": instance.user, "image": instance.image, "config": "",
        "userns": instance.userns, "cgroup": instance.cgroup, "ip": instance.ip,
        "logErrPath": instance.log_err, "logOutPath": instance.log_out,
        "checkpoint": "", "startTime": instance.start_time, "session": instance.session,
    }
    temp = f"{instance.path}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(body, out)
    os.rename(temp, instance.path)


def remove_state(instance: Instance) -> None:
    """Remove the state file and its directory (which holds nothing else)."""
    directory = os.path.dirname(instance.path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError as err:
            log.debug("cleanup: %s", err)
    try:
        os.rmdir(directory)
    except OSError as err:
        log.debug("cleanup: %s", err)


def _remove_ghost(instance: Instance) -> None:
    """The state of an instance whose monitor was killed, and the session
    directory it could not remove (empty: its mounts died with their
    namespace; only ever rmdir'ed, so a forged state file can do no harm)."""
    remove_state(instance)
    if os.path.basename(instance.session).startswith("capsa-session-"):
        try:
            os.rmdir(instance.session)
        except OSError as err:
            log.debug("cleanup: %s", err)


def _read_state(path: str) -> Instance | None:
    from capsa.errors import FormatError
    from capsa.jsondoc import load_file

    try:
        body = load_file(path, "instance state", max_size=_MAX_STATE)  # never a FIFO's wait
        return Instance(
            name=str(body["name"]), pid=int(body["pid"]), ppid=int(body["ppid"]),
            image=str(body.get("image", "")), user=str(body.get("user", "")),
            userns=bool(body.get("userns", False)),
            log_err=str(body.get("logErrPath", "")), log_out=str(body.get("logOutPath", "")),
            path=path, start_time=int(body.get("startTime", -1)), ip=str(body.get("ip", "")),
            session=str(body.get("session", "")), cgroup=bool(body.get("cgroup", False)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError,
            FormatError) as err:
        log.debug("ignoring unreadable instance file %s: %s", path, err)
        return None


def list_instances(pattern: str = "*", user: str | None = None) -> list[Instance]:
    """Running instances whose name matches the glob *pattern*; ghosts (their
    monitor gone) are removed on the way, as Apptainer does."""
    if "/" in pattern:
        return []
    base = _base("app", user)
    found: list[Instance] = []
    for path in sorted(glob.glob(os.path.join(glob.escape(base), pattern, pattern + ".json"))):
        instance = _read_state(path)
        if instance is None:
            continue
        if not is_running(instance):
            _remove_ghost(instance)
            continue
        found.append(instance)
    return found


def get_instance(name: str) -> Instance:
    check_name(name)
    found = list_instances(name)
    if len(found) != 1:
        raise NotFoundError(f"no instance found with name {name}")
    return found[0]


# -- stopping ------------------------------------------------------------------

def parse_signal(value: str) -> int:
    """``SIGTERM``, ``TERM``, ``term`` or ``15`` -> 15."""
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise UsageError(f"Could not convert stop signal: {value} is not a valid signal")


def stop_instances(instances: list[Instance], signum: int, timeout: float) -> None:
    """Signal each instance's PID 1, wait for its monitor to finish cleaning
    up; SIGKILL those still there after *timeout* seconds (or at once when
    their PID 1 has nothing left to signal)."""
    for instance in instances:
        log.info("Stopping %s instance of %s (PID=%d)", instance.name, instance.image,
                 instance.pid)
        _kill(instance.pid, signum)
    deadline = time.monotonic() + timeout
    pending = list(instances)
    killed: set[str] = set()
    while pending and time.monotonic() < deadline:
        time.sleep(_POLL)
        pending = [i for i in pending if is_running(i)]
        for instance in pending:
            if instance.name not in killed and not has_children(instance.pid):
                killed.add(instance.name)
                _kill(instance.pid, signal.SIGKILL)
    for instance in pending:
        log.info("Killing %s instance of %s (PID=%d) (Timeout)", instance.name,
                 instance.image, instance.pid)
        _kill(instance.pid, signal.SIGKILL)
    _wait_gone(pending, 10.0)


def _wait_gone(instances: list[Instance], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    pending = list(instances)
    while pending and time.monotonic() < deadline:
        time.sleep(_POLL)
        pending = [i for i in pending if is_running(i)]
    if pending:
        names = ", ".join(i.name for i in pending)
        raise ContainerError(f"instance(s) {names} did not stop")


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    except PermissionError as err:
        raise ContainerError(f"could not signal instance process {pid}: "
                             f"{err.strerror}") from err


__all__ = ["Instance", "check_name", "get_instance", "list_instances", "log_paths",
           "parse_signal", "state_path", "stop_instances", "write_state"]
