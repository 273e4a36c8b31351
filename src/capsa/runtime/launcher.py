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
from typing import TYPE_CHECKING

from capsa import children, linux, programs, report, userns
from capsa.errors import ContainerError
from capsa.runtime import env as envmod
from capsa.runtime.mounts import Session
from capsa.runtime.spec import DEFAULT_PATH, ContainerSpec
from capsa.runtime.tree import NoTestScript, Plan, Tree

if TYPE_CHECKING:
    from collections.abc import Callable

log = report.getLogger("capsa.runtime.launcher")



def fuse_usable() -> bool:
    """Can this process open /dev/fuse (and is squashfuse_ll there)?"""
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return False
    return programs.find("squashfuse_ll") is not None


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
    session = Session(spec.mounts.tmpdir, rootless=rootless)
    try:
        extract = _must_extract(spec, rootless)
        # Extracted on the host, unless the namespace maps the image's owners
        # (subordinate ids): unsquashfs then keeps them, as root inside.
        owners_mapped = spec.userns.idmap is not None and spec.userns.idmap.wide
        lower = session.extract(spec.image) if extract and not owners_mapped else None
        _enter_namespaces(spec)
        linux.make_private("/")
        session.mount_tmpfs()
        if extract and lower is None:
            lower = session.extract(spec.image)
        lower = _mount_image(session, spec, lower, rootless)
        if session.fuse is not None:
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
    if spec.process.action == "exec" and spec.process.argv:
        command = spec.process.argv[0]
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
        if rootless or not spec.mounts.use_fuse or not os.path.exists("/dev/loop-control"):
            from capsa.runtime.image import ext3_unmountable

            raise ext3_unmountable(image.path)
        return False
    if image.kind != "squashfs":
        return False
    if not spec.mounts.use_fuse or (rootless and not fuse_usable()):
        return True
    return not rootless and not os.path.exists("/dev/loop-control")


def host_root(spec: ContainerSpec) -> bool:
    """Real root on the host, with no user namespace to make: only then do
    loop devices and the kernel's squashfs work (root of a user namespace,
    as in an unprivileged build, mounts as a user does)."""
    return spec.userns.idmap is None and os.geteuid() == 0 and userns.in_initial_namespace()


def _enter_namespaces(spec: ContainerSpec) -> None:
    flags = linux.CLONE_NEWNS
    if spec.namespaces.ipc:
        flags |= linux.CLONE_NEWIPC
    if spec.namespaces.hostname:
        flags |= linux.CLONE_NEWUTS
    if spec.namespaces.net:
        flags |= linux.CLONE_NEWNET
    try:
        if spec.userns.idmap is not None:
            userns.enter(spec.userns.idmap, flags)
            if spec.userns.idmap.wide:
                os.setgroups([])  # no unmapped host groups (they show as nogroup)
        else:
            linux.unshare(flags)
        if spec.namespaces.hostname:
            linux.sethostname(spec.namespaces.hostname)
        if spec.namespaces.net:
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
    idmap = spec.userns.idmap
    wide = idmap.wide if idmap is not None else userns.current_map() is not None
    try:
        return session.mount_squashfuse(image, os.geteuid(), os.getegid(), allow_other=wide)
    except OSError as err:
        raise ContainerError(f"failed to mount squashfs image {image.path} with FUSE: "
                             f"{err.strerror}") from err


def _mount_root(session: Session, spec: ContainerSpec, lower: str, tree: Tree) -> str:
    if spec.mounts.writable:
        if spec.image.kind != "dir" and not session.extracted:
            raise ContainerError("--writable needs a sandbox directory image; "
                                 "SIF images are read-only (use --writable-tmpfs)")
        return session.bind_root(lower, readonly=False)
    writable = next((o for o in reversed(spec.mounts.overlays) if not o.readonly), None)
    upper = session.sub("upper") if writable is None else writable.path + "/upper"
    os.makedirs(upper, exist_ok=True)
    tree.precreate(lower, upper)
    try:
        if not spec.mounts.use_overlay:
            raise ContainerError("overlay disabled by the site's settings")
        return session.mount_overlay(lower, spec.mounts.overlays, writable)
    except ContainerError as err:
        if spec.mounts.overlays or spec.mounts.writable_tmpfs:
            raise
        # No overlayfs here (old kernel, odd lower filesystem): run on the
        # image itself, read-only; mount points it lacks are skipped.
        log.debug("%s; using the image without an overlay", err)
        tree.create_missing = False
        return session.bind_root(lower, readonly=True)


# --- processes --------------------------------------------------------------

def _run(spec: ContainerSpec, plan: Plan) -> int:
    if spec.namespaces.pid:
        try:
            linux.unshare(linux.CLONE_NEWPID)
        except OSError as err:
            raise ContainerError(f"could not create a PID namespace: {err.strerror}") from err
    children.block_forwarded()
    return children.monitor(fork_container(spec, lambda: _container(spec, plan)))


def fork_container(spec: ContainerSpec, body: Callable[[], int]) -> children.Child:
    """Fork the container's first process, in the container's cgroup when
    there are resource limits (the monitor itself stays out of it)."""
    if spec.limits is None:
        return children.fork(body)
    from capsa.runtime import cgroups

    home = cgroups.enter(spec.limits)
    try:
        return children.fork(body)
    finally:
        cgroups.leave(home)


def _container(spec: ContainerSpec, plan: Plan) -> int:
    """In the fork: private mounts, pivot, then exec (or be init)."""
    init = spec.namespaces.pid and not spec.process.no_init
    if init:  # imported here: the host's modules are out of reach after the pivot
        import capsa.runtime.proctitle  # noqa: F401
    enter_tree(plan)
    if init:
        return _init(spec, plan)
    _exec(spec, plan)
    return 255  # not reached: _exec replaces the process or raises


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
    return children.monitor(command)


def spawn_command(spec: ContainerSpec, plan: Plan) -> children.Child:
    """A child that execs the container's command."""

    def body() -> int:
        _exec(spec, plan)
        return 255  # not reached: _exec replaces the process or raises

    return children.fork(body, die_with_parent=False)  # PID 1 gone: the kernel ends it


def _exec(spec: ContainerSpec, plan: Plan) -> None:
    children.prepare_exec()
    forced = dict(spec.environment.forced)
    evaluate = forced.get("APPTAINER_NO_EVAL") != "1"
    if plan.has_shell:
        action = _shell_action(spec.process.action)
        script = envmod.shell_script(plan.scripts, forced, action, evaluate=evaluate)
        argv = ["/bin/sh", "-c", script, plan.argv[0], *plan.argv[1:]]
        if plan.wrapper:  # fakeroot(1): it starts its daemon, then runs the shell
            argv = [*plan.wrapper, "--", *argv]
        os.execve(argv[0], argv, plan.env)
    environment = _env_without_shell(plan, forced, evaluate)
    program = programs.find(plan.argv[0], environment.get("PATH", ""))
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


__all__ = ["fuse_usable", "launch"]
