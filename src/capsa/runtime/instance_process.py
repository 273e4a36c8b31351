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
from typing import NoReturn

from capsa import linux, report
from capsa.errors import ContainerError
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
from capsa.runtime.launcher import (
    _FORWARDED,
    _exec,
    _monitor,
    enter_tree,
    fork_container,
    launch,
    run_in_fork,
    spawn_command,
)
from capsa.runtime.mounts import resolve_in_root
from capsa.runtime.proctitle import INIT, INSTANCE_COMM, instance_title, set_title
from capsa.runtime.spec import ContainerSpec
from capsa.runtime.tree import Plan, Tree

log = report.getLogger("capsa.runtime.instance")

STARTSCRIPT = "/.singularity.d/startscript"
# Signals that end an instance whose init has no command left to forward them to.
_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Joined in this order: the user namespace first, for the rights to join the others.
_NAMESPACES = (("user", linux.CLONE_NEWUSER), ("ipc", linux.CLONE_NEWIPC),
               ("uts", linux.CLONE_NEWUTS), ("net", linux.CLONE_NEWNET),
               ("pid", linux.CLONE_NEWPID), ("mnt", linux.CLONE_NEWNS))
_MAX_REASON = 64 << 10


# -- start (the command) --------------------------------------------------------

def start_instance(spec: ContainerSpec, name: str, *, startscript: bool,
                   cleanup: tuple[str, ...] = ()) -> int:
    """Fork the detached monitor of instance *name*; once it runs, return
    its PID 1 (the instance may already have ended: its startscript failed).

    With *startscript* the container runs the image's startscript (its
    arguments are ``spec.argv``), else the action of *spec* (``run``).
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
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the monitor
        os.close(read_end)
        _monitor_main(spec, template, startscript, write_end, cleanup)
    os.close(write_end)
    message = _read_all(read_end)
    if message.startswith(b"ok "):
        return int(message[3:])
    os.waitpid(pid, 0)  # it has failed: let it finish cleaning up first
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
                  cleanup: tuple[str, ...]) -> None:
    """The detached monitor's whole life (never returns)."""
    code = 255
    state: list[Instance] = []
    try:
        _detach(template.log_err, template.log_out)

        def runner(spec: ContainerSpec, plan: Plan) -> int:
            return _run_instance(spec, plan, template, startscript, notify, state)

        code = launch(spec, runner)
    except ContainerError as err:
        log.critical("%s", err)
    except BaseException as err:
        log.critical("instance setup failed: %s", err)
    finally:
        for instance in state:
            remove_state(instance)
        for path in cleanup:
            _unlink(path)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


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
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = fork_container(spec)
    if pid == 0:  # pragma: no cover - the container's PID 1
        os.close(ready_read)
        os.close(notify)
        _container(spec, plan, ready_write)
    os.close(ready_write)
    set_title(instance_title(template.user, template.name), INSTANCE_COMM)
    if not _read_all(ready_read):
        return _monitor(pid) or 255  # it failed; the reason is in the log
    started = process_start_time(os.getpid())
    instance = template._replace(pid=pid, ppid=os.getpid(),
                                 start_time=-1 if started is None else started,
                                 session=os.path.dirname(plan.root))
    write_state(instance)
    state.append(instance)
    os.write(notify, b"ok %d" % pid)
    os.close(notify)
    return _monitor(pid)


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
                    user=user_name(os.getuid()), userns=os.geteuid() != 0 or spec.fakeroot,
                    log_err=logs[0], log_out=logs[1], path=state_path(name), start_time=-1,
                    cgroup=spec.limits is not None)


# -- the container's PID 1 ------------------------------------------------------

def _container(spec: ContainerSpec, plan: Plan, ready: int) -> NoReturn:
    """Pivot into the tree, start the command, say ready, then be init."""

    def body() -> int:
        enter_tree(plan)
        main = spawn_command(spec, plan) if plan.argv else 0
        set_title(INIT, INIT)  # before saying ready: a joining `ps` sees appinit
        os.write(ready, b"1")
        os.close(ready)
        return _init(main)

    run_in_fork(body)


def _init(main: int) -> int:
    """Reap everything; forward signals to *main* while it runs; end when it
    fails, or on a stop signal once it is gone: that signal then goes to
    every process left (daemons the startscript started), and PID 1 ends
    when they have."""
    stopping = False
    while True:
        signum = signal.sigwaitinfo(_FORWARDED).si_signo
        if signum == signal.SIGCHLD:
            status, others = _reap(main)
            if status is not None:
                main = 0
                if status != 0:
                    return status
            if stopping and not others:
                return 0
        elif main:
            _signal(main, signum)
        elif signum in _STOPPING:
            stopping = True
            _signal(-1, signum)  # from PID 1: everyone else in the namespace
            if not _reap(0)[1]:
                return 0


def _reap(main: int) -> tuple[int | None, bool]:
    """Collect every finished child: the status of *main* if it was one, and
    whether any child is left."""
    status = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status, False
        if pid == 0:
            return status, True
        if pid == main:
            code = os.waitstatus_to_exitcode(raw)
            status = 128 - code if code < 0 else code


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return


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
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the command, inside
        _joined(spec, plan)
    return _monitor(pid)


def _namespace_fds(pid: int) -> list[tuple[int, int]]:
    """Open fds of the namespaces of *pid* that are not already ours."""
    fds: list[tuple[int, int]] = []
    try:
        for name, kind in _NAMESPACES:
            theirs = f"/proc/{pid}/ns/{name}"
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            fds.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), kind))
    except OSError as err:
        for fd, _kind in fds:
            os.close(fd)
        raise ContainerError(f"could not open the namespaces of instance process {pid}: "
                             f"{err.strerror}") from err
    return fds


def _join_plan(spec: ContainerSpec) -> Plan:
    """What to run, where and with which environment, seen from inside."""
    tree = Tree(None, spec)  # type: ignore[arg-type]  # no session: nothing is mounted
    tree.root = ""
    has_shell = os.access(resolve_in_root("/", "/bin/sh"), os.X_OK)
    argv = tree._action_argv(has_shell)
    cwd = tree._working_dir()
    env = envmod.base_env(dict(spec.host_env), home=spec.home_dest, image_ref=spec.image_ref,
                          action=spec.action, binds=",".join(b.dest for b in spec.binds),
                          app=spec.app)
    env["PWD"] = cwd
    if spec.gpu is not None:
        env.update(spec.gpu.env)
    scripts = envmod.env_script_paths("", spec.app)
    return Plan("/", cwd, argv, env, has_shell, scripts, False)


def _joined(spec: ContainerSpec, plan: Plan) -> None:
    """In the fork, inside the instance's PID namespace: exec (never returns)."""
    try:
        linux.set_parent_death_signal(signal.SIGKILL)
        os.chdir(plan.cwd)
        linux.set_no_new_privs()
        _exec(spec, plan)
    except ContainerError as err:
        log.critical("%s", err)
    except BaseException as err:
        log.critical("could not run in the instance: %s", err)
    finally:
        sys.stderr.flush()
        os._exit(255)


__all__ = ["join_instance", "start_instance"]
