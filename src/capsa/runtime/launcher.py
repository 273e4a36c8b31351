"""Start a container: namespaces, the filesystem tree, then exec.

Process model (no daemon, no setuid helper):

- **monitor** (this process): unshares a user namespace (unprivileged) and a
  mount namespace, mounts the session tmpfs, the image (squashfuse_ll
  served by a child, a loop device as root, or an extracted sandbox) and an
  overlay on it, binds everything in, then forks the container and waits,
  forwarding signals.  Afterwards it stops squashfuse, unmounts and removes
  what it made.
- **container** (the fork): unshares its own mount namespace (so the
  pivot does not move the monitor), pivots into the tree and execs the
  action: ``/bin/sh -c`` sourcing the env scripts when the image has a
  shell, else the command itself with an environment computed here.

With ``--pid`` the container is PID 1 of a new PID namespace and, unless
``--no-init``, stays there as a tiny init that reaps and forwards.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

from capsa import linux, report, userns
from capsa.errors import ContainerError
from capsa.runtime import env as envmod
from capsa.runtime.mounts import Session, find_program, session_tmpdir
from capsa.runtime.spec import DEFAULT_PATH, ContainerSpec
from capsa.runtime.tree import NoTestScript, Plan, Tree

if TYPE_CHECKING:
    from collections.abc import Callable

log = report.getLogger("capsa.runtime.launcher")

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGCHLD)
_SI_KERNEL = 0x80


def fuse_disabled() -> bool:
    """The test switch ``CAPSA_DISABLE_FUSE=1``: no FUSE, and no loop device
    either, so that the extraction fallback runs (as root too)."""
    return os.environ.get("CAPSA_DISABLE_FUSE", "") not in ("", "0")


def fuse_usable() -> bool:
    """Can this process open /dev/fuse (and is squashfuse_ll there)?"""
    if fuse_disabled():
        return False
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return False
    return find_program("squashfuse_ll") is not None


def launch(spec: ContainerSpec,
           runner: Callable[[ContainerSpec, Plan], int] | None = None) -> int:
    """Run the container described by *spec*; return its exit status.

    *runner* replaces the default process start once the tree is built
    (instances start their own way, see :mod:`capsa.runtime.instance_process`).
    The ranks of a parallel job share one container (:mod:`capsa.runtime.sharens`)."""
    if runner is None and spec.share_key is not None:
        from capsa.runtime.sharens import launch_shared

        return launch_shared(spec)
    rootless = not host_root(spec)
    session = Session(session_tmpdir(), rootless=rootless)
    try:
        extract = _must_extract(spec, rootless)
        # Extracted on the host, unless the namespace maps the image's owners
        # (subordinate ids): unsquashfs then keeps them, as root inside.
        owners_mapped = spec.idmap is not None and spec.idmap.wide
        lower = session.extract(spec.image) if extract and not owners_mapped else None
        _enter_namespaces(spec)
        linux.make_private("/")
        session.mount_tmpfs()
        if extract and lower is None:
            lower = session.extract(spec.image)
        lower = _mount_image(session, spec, lower, rootless)
        if session.fuse_pid:
            session.prefetch(lower, _first_programs(spec))
        tree = Tree(session, spec)
        tree.plan(lower)
        tree.apply(_mount_root(session, spec, lower, tree))
        try:
            plan = tree.finish()
        except NoTestScript:
            log.info("No test script found in container, exiting")
            return 0
        return (runner or _run)(spec, plan)
    finally:
        session.close()
        if spec.limits is not None:
            from capsa.runtime.cgroups import remove

            remove(spec.limits)


def _first_programs(spec: ContainerSpec) -> list[str]:
    """What the container execs first: its shell (which sources the env
    scripts) and, for ``exec``, the command as found on the default PATH."""
    programs = ["/bin/sh"]
    if spec.action == "exec" and spec.argv:
        command = spec.argv[0]
        if command.startswith("/"):
            programs.append(command)
        elif "/" not in command:
            programs += [f"{d}/{command}" for d in DEFAULT_PATH.split(":")]
    return programs


def _must_extract(spec: ContainerSpec, rootless: bool) -> bool:
    """A squashfs that neither FUSE nor a loop device can serve is extracted;
    an ext3 image (Singularity 2.x) needs root's loop device."""
    image = spec.image
    if image.kind == "ext3":
        if rootless or fuse_disabled() or not os.path.exists("/dev/loop-control"):
            from capsa.runtime.image import ext3_unmountable

            raise ext3_unmountable(image.path)
        return False
    if image.kind != "squashfs":
        return False
    if not spec.use_fuse or fuse_disabled() or (rootless and not fuse_usable()):
        return True
    return not rootless and not os.path.exists("/dev/loop-control")


def host_root(spec: ContainerSpec) -> bool:
    """Real root on the host, with no user namespace to make: only then do
    loop devices and the kernel's squashfs work (root of a user namespace,
    as in an unprivileged build, mounts as a user does)."""
    return spec.idmap is None and os.geteuid() == 0 and userns.in_initial_namespace()


def _enter_namespaces(spec: ContainerSpec) -> None:
    flags = linux.CLONE_NEWNS
    if spec.ipc_ns:
        flags |= linux.CLONE_NEWIPC
    if spec.hostname:
        flags |= linux.CLONE_NEWUTS
    if spec.net_ns:
        flags |= linux.CLONE_NEWNET
    try:
        if spec.idmap is not None:
            userns.enter(spec.idmap, flags)
            if spec.idmap.wide:
                os.setgroups([])  # no unmapped host groups (they show as nogroup)
        else:
            linux.unshare(flags)
        if spec.hostname:
            linux.sethostname(spec.hostname)
        if spec.net_ns:
            linux.loopback_up()
    except OSError as err:
        raise ContainerError(f"could not create the container namespaces: {err.strerror}; "
                             "are unprivileged user namespaces enabled?") from err


def _mount_image(session: Session, spec: ContainerSpec, extracted: str | None,
                 rootless: bool) -> str:
    image = spec.image
    if image.kind == "dir":
        return image.path
    if extracted is not None:
        return extracted
    if not rootless:
        try:
            return session.mount_squashfs_loop(image)
        except OSError as err:
            raise ContainerError(f"failed to mount {image.kind} image {image.path}: "
                                 f"{err.strerror}") from err
    # Ids as seen in the namespace entered above; several mapped users
    # (subordinate ids) may all read the image.
    wide = spec.idmap.wide if spec.idmap is not None else userns.current_map() is not None
    try:
        return session.mount_squashfuse(image, os.geteuid(), os.getegid(), allow_other=wide)
    except OSError as err:
        raise ContainerError(f"failed to mount squashfs image {image.path} with FUSE: "
                             f"{err.strerror}") from err


def _mount_root(session: Session, spec: ContainerSpec, lower: str, tree: Tree) -> str:
    if spec.writable:
        if spec.image.kind != "dir" and not session.extracted:
            raise ContainerError("--writable needs a sandbox directory image; "
                                 "SIF images are read-only (use --writable-tmpfs)")
        return session.bind_root(lower, readonly=False)
    writable = next((o for o in reversed(spec.overlays) if not o.readonly), None)
    upper = session.sub("upper") if writable is None else writable.path + "/upper"
    os.makedirs(upper, exist_ok=True)
    tree.precreate(lower, upper)
    try:
        if os.environ.get("CAPSA_DISABLE_OVERLAY", "") not in ("", "0"):  # test switch
            raise ContainerError("overlay disabled by CAPSA_DISABLE_OVERLAY")
        return session.mount_overlay(lower, spec.overlays, writable)
    except ContainerError as err:
        if spec.overlays or spec.writable_tmpfs:
            raise
        # No overlayfs here (old kernel, odd lower filesystem): run on the
        # image itself, read-only; mount points it lacks are skipped.
        log.debug("%s; using the image without an overlay", err)
        tree.create_missing = False
        return session.bind_root(lower, readonly=True)


# --- processes --------------------------------------------------------------

def _run(spec: ContainerSpec, plan: Plan) -> int:
    if spec.pid_ns:
        try:
            linux.unshare(linux.CLONE_NEWPID)
        except OSError as err:
            raise ContainerError(f"could not create a PID namespace: {err.strerror}") from err
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = fork_container(spec)
    if pid == 0:  # pragma: no cover - the container process
        _container(spec, plan)
    return _monitor(pid)


def fork_container(spec: ContainerSpec) -> int:
    """Fork the container's first process, in the container's cgroup when
    there are resource limits (the monitor itself stays out of it)."""
    if spec.limits is None:
        return os.fork()
    from capsa.runtime import cgroups

    home = cgroups.enter(spec.limits)
    try:
        pid = os.fork()
    except BaseException:
        cgroups.leave(home)
        raise
    if pid:
        cgroups.leave(home)
    return pid


def _monitor(child: int) -> int:
    """Wait for *child*, forwarding signals sent to us; its status as ours."""
    while True:
        info = signal.sigwaitinfo(_FORWARDED)
        if info.si_signo != signal.SIGCHLD:
            if info.si_code != _SI_KERNEL:  # the terminal signals the group itself
                _kill(child, info.si_signo)
            continue
        status = _reap(child)
        if status is not None:
            return status


def _reap(child: int) -> int | None:
    """Collect finished children; the exit status of *child* once it is done."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 255
        if pid == 0:
            return None
        if pid == child:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return


def run_in_fork(body: Callable[[], int]) -> NoReturn:
    """End a forked container process with *body*'s status; a setup failure
    becomes one FATAL line and status 255.  Never returns to the caller's
    stack (the parent's cleanup must not run twice)."""
    code = 255
    try:
        code = body()
    except ContainerError as err:
        log.critical("%s", err)
    except BaseException as err:
        log.critical("container setup failed: %s", err)
    finally:
        sys.stderr.flush()
        os._exit(code)


def _container(spec: ContainerSpec, plan: Plan) -> NoReturn:
    """In the fork: private mounts, pivot, then exec (or be init)."""

    def body() -> int:
        init = spec.pid_ns and not spec.no_init
        if init:  # imported here: the host's modules are out of reach after the pivot
            import capsa.runtime.proctitle  # noqa: F401
        enter_tree(plan)
        if init:
            return _init(spec, plan)
        _exec(spec, plan)
        return 255  # not reached: _exec replaces the process or raises

    run_in_fork(body)


def enter_tree(plan: Plan) -> None:
    """In the container's first process (``capsa exec``'s and an instance's):
    die with the parent, private mounts, ``/proc``, pivot into the tree, its
    working directory, no new privileges."""
    linux.set_parent_death_signal(signal.SIGKILL)
    linux.unshare(linux.CLONE_NEWNS)
    if plan.mount_proc:
        linux.mount("proc", plan.root + "/proc", "proc",
                    linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    linux.pivot_root(plan.root)
    os.chdir(plan.cwd)
    linux.set_no_new_privs()


def _init(spec: ContainerSpec, plan: Plan) -> int:
    """PID 1 of the container: run the command, reap, forward signals.
    Named as Apptainer's init once the command is on its way."""
    command = spawn_command(spec, plan)
    from capsa.runtime.proctitle import INIT, set_title

    set_title(INIT, INIT)
    return _monitor(command)


def spawn_command(spec: ContainerSpec, plan: Plan) -> int:
    """Fork a child that execs the container's command; its PID."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the container's command
        try:
            _exec(spec, plan)
        except BaseException as err:
            log.critical("%s", err)
        finally:
            sys.stderr.flush()
            os._exit(255)
    return pid


def _exec(spec: ContainerSpec, plan: Plan) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    forced = dict(spec.env)
    evaluate = forced.get("APPTAINER_NO_EVAL") != "1"
    if plan.has_shell:
        action = _shell_action(spec.action)
        script = envmod.shell_script(plan.scripts, forced, action, evaluate=evaluate)
        argv = ["/bin/sh", "-c", script, plan.argv[0], *plan.argv[1:]]
        if plan.wrapper:  # fakeroot(1): it starts its daemon, then runs the shell
            argv = [*plan.wrapper, "--", *argv]
        os.execve(argv[0], argv, plan.env)
    environment = _env_without_shell(plan, forced, evaluate)
    program = _find(plan.argv[0], environment.get("PATH", ""))
    if program is None:
        sys.stderr.write(f'FATAL:   "{plan.argv[0]}": executable file not found in $PATH\n')
        sys.stderr.flush()
        os._exit(127)
    try:
        os.execve(program, plan.argv, environment)
    except FileNotFoundError as err:  # the ELF interpreter, not the program
        raise ContainerError(f"exec {program} failed: a shared library is likely missing "
                             "in the image") from err


def _shell_action(action: str) -> str:
    """The tail of the ``sh -c`` script; ``$0`` is the program, ``$@`` its args."""
    if action != "exec":
        return 'exec "$0" "$@"'
    return ('case $0 in */*) ;; *) if ! command -v -- "$0" >/dev/null 2>&1; then '
            'printf \'FATAL:   "%s": executable file not found in $PATH\\n\' "$0" >&2; '
            'exit 127; fi ;; esac\n'
            'exec "$0" "$@"')


def _env_without_shell(plan: Plan, forced: dict[str, str], evaluate: bool) -> dict[str, str]:
    environment = dict(plan.env)
    for script in plan.scripts:
        try:
            with open(script, encoding="utf-8", errors="replace") as handle:
                envmod.apply_env_script(handle.read(), environment)
        except OSError:
            continue
    return envmod.final_env(environment, forced, evaluate=evaluate)


def _find(program: str, path: str) -> str | None:
    if "/" in program:
        return program
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


__all__ = ["fuse_disabled", "fuse_usable", "launch"]
