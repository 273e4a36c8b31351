"""Starting an instance, and joining one (``exec instance://NAME``).

No daemon.  ``instance start`` forks a **monitor** that detaches (new
session, stdio to the instance's log files) and sets the container up
exactly as ``capsa exec`` does (:func:`capsa.runtime.launcher.launch`): it
keeps squashfuse alive for the instance's life and, when the instance ends,
stops it, unmounts and removes everything, the state file last.

The container is always PID 1 of a new PID namespace, a small init that
runs the startscript (``instance start``) or the runscript (``instance
run``), reaps orphans and forwards signals.  As in Apptainer, the instance
outlives a startscript that exits 0 (or an image without one); it ends when
the script fails, when its init is told to stop (SIGINT, SIGTERM, SIGHUP,
SIGQUIT with nothing left to forward them to), or when it is killed.

The starting command waits on a pipe until the container is ready (or
failed: the reason is then in the error log) before it returns.

Joining opens ``/proc/PID/ns/{user,ipc,uts,net,pid,mnt}`` of the instance's
init, ``setns`` into those that differ from ours, forks (a PID namespace
applies to children) and execs the action there with the environment built
as for ``exec``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable

from capsa import children, linux, report
from capsa.errors import ContainerError, UsageError
from capsa.runtime import env as envmod
from capsa.runtime.instance import (
    Instance,
    log_paths,
    process_start_time,
    remove_state,
    state_path,
    user_name,
    write_state,
)
from capsa.runtime.launcher import _exec, enter_tree, fork_container, launch, spawn_command
from capsa.runtime.mounts import resolve_in_root
from capsa.runtime.proctitle import INIT, INSTANCE_COMM, instance_title, set_title
from capsa.runtime.request import ContainerRequest, Host
from capsa.runtime.spec import ContainerSpec
from capsa.runtime.tree import Plan, Tree

log = report.getLogger("capsa.runtime.instance")

STARTSCRIPT = "/.singularity.d/startscript"
# Signals that end an instance whose init has no command left to forward them to.
_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Joined in this order: the user namespace first, for the rights to join the others.
_NAMESPACES = (linux.CLONE_NEWUSER, linux.CLONE_NEWIPC, linux.CLONE_NEWUTS,
               linux.CLONE_NEWNET, linux.CLONE_NEWPID, linux.CLONE_NEWNS)
_MAX_REASON = 64 << 10


# -- start (the command) --------------------------------------------------------

def start_request(request: ContainerRequest, name: str, host: Host,
                  check: Callable[[ContainerSpec], None] | None = None) -> int:
    """Start instance *name* as *request* says: ``action="start"`` runs the
    image's startscript with the request's args, ``"run"`` its runscript;
    *check* sees the spec first (a signing policy); the instance's PID 1."""
    from capsa.runtime.instance import check_name, list_instances
    from capsa.runtime.request import container_spec, expand

    check_name(name)
    if list_instances(name):
        raise ContainerError(f"instance {name} already exists")
    startscript = request.action == "start"
    if request.action not in ("start", "run"):
        raise UsageError(f"an instance starts or runs, it cannot {request.action!r}")
    # an instance always has its own PID namespace, with an init as PID 1
    request = expand(request)._replace(
        action="exec" if startscript else "run", pid=True, no_init=False, compat=False,
        containall=False, args=(STARTSCRIPT, *request.args) if startscript else request.args)
    spec = container_spec(request, host)
    if check is not None:
        check(spec)
    return start_instance(spec, name, startscript=startscript)


def start_instance(spec: ContainerSpec, name: str, *, startscript: bool,
                   cleanup: tuple[str, ...] = ()) -> int:
    """Fork the detached monitor of instance *name*; once it runs, return
    its PID 1 (the instance may already have ended: its startscript failed).

    With *startscript* the container runs the image's startscript (its
    arguments are ``spec.process.argv``), else the action of *spec* (``run``).
    *cleanup* names files the monitor removes when the instance ends.
    """
    err_path, out_path = log_paths(name)
    template = _template(spec, name, (err_path, out_path))
    try:
        os.makedirs(os.path.dirname(err_path), mode=0o700, exist_ok=True)
    except OSError as err:
        raise ContainerError(f"could not create the instance log directory "
                             f"{os.path.dirname(err_path)}: {err.strerror}") from err
    offset = _size(err_path)
    read_end, write_end = os.pipe()

    def monitor() -> int:
        os.close(read_end)
        return _monitor_main(spec, template, startscript, write_end, cleanup)

    # detached: it outlives this command, for the instance's life
    child = children.fork(monitor, die_with_parent=False)
    os.close(write_end)
    message = _read_all(read_end)
    if message.startswith(b"ok "):
        return int(message[3:])
    child.wait()  # it has failed: let it finish cleaning up first
    raise ContainerError(_failure_reason(err_path, offset))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 256):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _failure_reason(err_path: str, offset: int) -> str:
    """The instance's own FATAL lines, else the tail of its error log."""
    try:
        with open(err_path, "rb") as handle:
            handle.seek(offset)
            text = handle.read(_MAX_REASON).decode("utf-8", "replace")
    except OSError:
        text = ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line.split(":", 1)[1].strip() for line in lines if line.startswith("FATAL:")]
    if fatal:
        return "failed to start instance: " + "; ".join(fatal)
    if lines:
        return f"failed to start instance: {lines[-1]} (see {err_path})"
    return f"failed to start instance (see {err_path})"


# -- the monitor ----------------------------------------------------------------

def _monitor_main(spec: ContainerSpec, template: Instance, startscript: bool, notify: int,
                  cleanup: tuple[str, ...]) -> int:
    """The detached monitor's whole life: the instance's exit status."""
    state: list[Instance] = []
    try:
        _detach(template.log_err, template.log_out)

        def runner(spec: ContainerSpec, plan: Plan) -> int:
            return _run_instance(spec, plan, template, startscript, notify, state)

        return launch(spec, runner)
    finally:
        for instance in state:
            remove_state(instance)
        for path in cleanup:
            _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        return


def _detach(err_path: str, out_path: str) -> None:
    """A session of our own, no terminal, stdout/stderr to the log files, and
    no hold on the caller's working directory (every path in the spec is
    absolute)."""
    os.setsid()
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDWR)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
    out = os.open(out_path, flags, 0o644)
    err = os.open(err_path, flags, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)


def _run_instance(spec: ContainerSpec, plan: Plan, template: Instance, startscript: bool,
                  notify: int, state: list[Instance]) -> int:
    """In the monitor, the tree built: start PID 1, record the state, wait."""
    plan = _instance_plan(plan, startscript)
    try:
        linux.unshare(linux.CLONE_NEWPID)
    except OSError as err:
        raise ContainerError(f"could not create a PID namespace: {err.strerror}") from err
    ready_read, ready_write = os.pipe()

    def pid1() -> int:
        os.close(ready_read)
        os.close(notify)
        return _container(spec, plan, ready_write)

    children.block_forwarded()
    child = fork_container(spec, pid1)
    os.close(ready_write)
    set_title(instance_title(template.user, template.name), INSTANCE_COMM)
    if not _read_all(ready_read):
        return children.monitor(child) or 255  # it failed; the reason is in the log
    started = process_start_time(os.getpid())
    instance = template._replace(pid=child.pid, ppid=os.getpid(),
                                 start_time=-1 if started is None else started,
                                 session=os.path.dirname(plan.root))
    write_state(instance)
    state.append(instance)
    os.write(notify, b"ok %d" % child.pid)
    os.close(notify)
    return children.monitor(child)


def _instance_plan(plan: Plan, startscript: bool) -> Plan:
    """The startscript (when the image has one) instead of the exec argv."""
    if not startscript:
        return plan
    env = dict(plan.env)
    for prefix in ("APPTAINER_", "SINGULARITY_"):
        env[prefix + "COMMAND"] = "start"
    host = plan.root + resolve_in_root(plan.root, STARTSCRIPT)
    args = plan.argv[1:]
    if not os.path.isfile(host):
        argv: list[str] = []
    elif os.access(host, os.X_OK):
        argv = [STARTSCRIPT, *args]
    else:
        argv = ["/bin/sh", STARTSCRIPT, *args]
    return plan._replace(argv=argv, env=env)


def _template(spec: ContainerSpec, name: str, logs: tuple[str, str]) -> Instance:
    """The instance's record, less its processes: computed here, before any
    namespace (``--hostname`` and ``--fakeroot`` would change host and user)."""
    return Instance(name=name, pid=0, ppid=0, image=spec.image.path,
                    user=user_name(os.getuid()), userns=os.geteuid() != 0 or spec.userns.fakeroot,
                    log_err=logs[0], log_out=logs[1], path=state_path(name), start_time=-1,
                    cgroup=spec.limits is not None)


# -- the container's PID 1 ------------------------------------------------------

def _container(spec: ContainerSpec, plan: Plan, ready: int) -> int:
    """Pivot into the tree, start the command, say ready, then be init."""
    enter_tree(plan)
    main = spawn_command(spec, plan) if plan.argv else None
    set_title(INIT, INIT)  # before saying ready: a joining `ps` sees appinit
    os.write(ready, b"1")
    os.close(ready)
    return _init(main)


def _init(main: children.Child | None) -> int:
    """Reap everything; forward signals to *main* while it runs; end when it
    fails, or on a stop signal once it is gone: that signal then goes to
    every process left (daemons the startscript started), and PID 1 ends
    when they have."""
    stopping = False
    while True:
        signum = signal.sigwaitinfo(children.FORWARDED).si_signo
        if signum == signal.SIGCHLD:
            status, others = children.reap(main.pid if main else 0)
            if status is not None:
                main = None
                if status != 0:
                    return status
            if stopping and not others:
                return 0
        elif main is not None:
            main.signal(signum)
        elif signum in _STOPPING:
            stopping = True
            children.signal_pid(-1, signum)  # from PID 1: everyone else in the namespace
            if not children.reap(0)[1]:
                return 0


# -- joining --------------------------------------------------------------------

def join_instance(spec: ContainerSpec, instance: Instance) -> int:
    """Run *spec*'s action inside *instance*; its exit status."""
    if instance.cgroup:  # as Apptainer, the joining process shares its limits
        from capsa.runtime.cgroups import join_cgroup_of

        join_cgroup_of(instance.pid)
    fds = _namespace_fds(instance.pid)
    try:
        for fd, kind in fds:
            linux.setns(fd, kind)
    except OSError as err:
        raise ContainerError(f"could not join instance {instance.name}: "
                             f"{err.strerror}") from err
    finally:
        for fd, _kind in fds:
            os.close(fd)
    plan = _join_plan(spec)
    children.block_forwarded()
    return children.monitor(children.fork(lambda: _joined(spec, plan)))


def _namespace_fds(pid: int) -> list[tuple[int, int]]:
    """Open fds of the namespaces of *pid* that are not already ours."""
    try:
        return linux.foreign_namespaces(pid, _NAMESPACES)
    except OSError as err:
        raise ContainerError(f"could not open the namespaces of instance process {pid}: "
                             f"{err.strerror}") from err


def _join_plan(spec: ContainerSpec) -> Plan:
    """What to run, where and with which environment, seen from inside."""
    tree = Tree(None, spec)  # type: ignore[arg-type]  # no session: nothing is mounted
    tree.root = ""
    has_shell = os.access(resolve_in_root("/", "/bin/sh"), os.X_OK)
    argv = tree._action_argv(has_shell)
    cwd = tree._working_dir()
    env = envmod.container_env(spec, cwd)
    scripts = envmod.env_script_paths("", spec.process.app)
    return Plan("/", cwd, argv, env, has_shell, scripts, False)


def _joined(spec: ContainerSpec, plan: Plan) -> int:
    """In the fork, inside the instance's PID namespace: exec."""
    os.chdir(plan.cwd)
    linux.set_no_new_privs()
    _exec(spec, plan)
    return 255  # not reached: _exec replaces the process or raises


__all__ = ["join_instance", "start_instance"]
