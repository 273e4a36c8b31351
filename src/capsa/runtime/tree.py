"""The container's filesystem tree: which mounts go where, and in what order.

Three phases, because an unprivileged user cannot create directories in a
read-only image (nor in an overlay of it, whose directories belong to
unmapped root):

1. :meth:`Tree.plan` decides every mount from the spec and the image
   (``lower``) and writes the generated ``/etc/passwd`` and ``/etc/group``;
2. :meth:`Tree.precreate` makes missing mount points in the overlay's upper
   directory, before the overlay is mounted (Apptainer's "underlay" idea);
3. :meth:`Tree.apply` performs the mounts on the final root, and
   :meth:`Tree.finish` says what the container process must run.
"""

from __future__ import annotations

import os

from capsa import linux, report
from capsa.errors import ContainerError, NotFoundError
from capsa.record import Record
from capsa.runtime import env as envmod
from capsa.runtime.mounts import Session, resolve_in_root
from capsa.runtime.passwd import group_text, passwd_text
from capsa.runtime.spec import DEFAULT_PATH, LIBS_DIR, ContainerSpec

log = report.getLogger("capsa.runtime.tree")

_SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64",
                "/proc", "/root", "/sbin", "/sys", "/usr", "/var")
_MAX_IDENTITY_FILE = 4 << 20
FAKEROOT_STATE = "fakeroot.db"
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


class Mount(Record):
    """One planned mount: ``bind`` a host path, ``dev`` (a minimal /dev),
    ``sysfs`` (a fresh one) or ``dir`` (only make sure the directory exists)."""

    kind: str
    source: str
    dest: str
    readonly: bool = False
    recursive: bool = True
    directory: bool = True


class Plan(Record):
    """What the container process needs once the tree is built."""

    root: str
    cwd: str
    argv: list[str]
    env: dict[str, str]
    has_shell: bool
    scripts: list[str]
    mount_proc: bool
    # fakeroot(1) and its options, run before ``--`` and the command (a
    # root-mapped namespace); its variables are in *env*.
    wrapper: tuple[str, ...] = ()


class NoTestScript(Exception):
    """The image has no test script: Apptainer says so and exits 0."""


class Tree:
    """Plans, prepares and performs the mounts of one container."""

    def __init__(self, session: Session, spec: ContainerSpec) -> None:
        self.session = session
        self.spec = spec
        self.mounts: list[Mount] = []
        self.libs: list[tuple[str, str]] = []  # (host file, name in LIBS_DIR)
        self.root = ""
        self.create_missing = True  # False: a read-only root without an overlay

    # -- 1. plan -----------------------------------------------------------
    def add(self, source: str, dest: str, *, readonly: bool = False,
            recursive: bool = True) -> None:
        self.mounts.append(Mount("bind", source, dest, readonly, recursive,
                                 os.path.isdir(source)))

    def plan(self, lower: str) -> None:
        spec = self.spec
        if "proc" not in spec.mounts.no_mount:
            if spec.namespaces.pid:
                self.mounts.append(Mount("dir", "", "/proc"))
            else:
                self.add("/proc", "/proc")
        if "sys" not in spec.mounts.no_mount:
            if spec.namespaces.net:  # sysfs shows the network of whoever mounts it
                self.mounts.append(Mount("sysfs", "", "/sys"))
            else:
                self.add("/sys", "/sys")
        if "dev" not in spec.mounts.no_mount:
            if spec.mounts.contain:
                self.mounts.append(Mount("dev", "", "/dev"))
            else:
                self.add("/dev", "/dev")
        self._plan_home()
        self._plan_system_files()
        self._plan_scratch()
        for bind in spec.mounts.binds:
            self.add(bind.source, bind.dest, readonly=bind.readonly)
        self._plan_cwd()
        if spec.gpu is not None:
            self._plan_gpu()
        if spec.userns.tool is not None:
            self._plan_fakeroot()
        self._plan_libs()
        self._plan_identity(lower)

    def _plan_home(self) -> None:
        spec = self.spec
        if "home" in spec.mounts.no_mount:
            return
        source = spec.mounts.home_source
        if spec.mounts.contain and source == spec.identity.home:
            source = self._contained_dir("home")
        if not os.path.isdir(source):
            log.debug("home directory %s does not exist, not mounting it", source)
            return
        self.add(source, spec.mounts.home_dest)

    def _plan_system_files(self) -> None:
        spec = self.spec
        if "tmp" not in spec.mounts.no_mount:
            contained = spec.mounts.contain
            self.add(self._contained_dir("tmp") if contained else "/tmp", "/tmp")
            self.add(self._contained_dir("var_tmp") if contained else "/var/tmp", "/var/tmp")
        paths = ["/etc/resolv.conf"]
        if "bind-paths" not in spec.mounts.no_mount:
            paths[:0] = ["/etc/localtime", "/etc/hosts"]
        for path in paths:
            if os.path.exists(path) and path not in spec.mounts.no_mount:
                self.add(path, path, recursive=False)

    def _contained_dir(self, name: str) -> str:
        """An empty directory for a contained /tmp, /var/tmp or $HOME: in the
        session tmpfs, or under ``-W/--workdir`` (kept, as Apptainer does)."""
        if self.spec.mounts.workdir:
            path = f"{self.spec.mounts.workdir}/{name}"
            os.makedirs(path, mode=0o700 if name == "home" else 0o1777, exist_ok=True)
            return path
        path = self.session.sub(f"contained/{name}")
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755 if name == "home" else 0o1777)
        return path

    def _plan_scratch(self) -> None:
        for number, dest in enumerate(self.spec.mounts.scratch):
            base = self.spec.mounts.workdir or self.session.sub("scratch")
            source = f"{base}/scratch-{number}" if self.spec.mounts.workdir else f"{base}/{number}"
            os.makedirs(source, exist_ok=True)
            self.add(source, dest)

    def _plan_cwd(self) -> None:
        spec = self.spec
        cwd = spec.process.cwd
        if spec.mounts.contain or "cwd" in spec.mounts.no_mount or not cwd or cwd in _SYSTEM_DIRS:
            return
        if cwd.startswith(("/proc/", "/sys/", "/dev/")):
            return
        for mount in self.mounts:
            if mount.kind == "bind" and (cwd == mount.dest or
                                         cwd.startswith(mount.dest.rstrip("/") + "/")):
                return
        self.add(cwd, cwd)

    def _plan_gpu(self) -> None:
        plan = self.spec.gpu
        assert plan is not None
        for warning in plan.warnings:
            log.warning("%s", warning)
        for library in plan.libraries:
            self.libs.append((library, os.path.basename(library)))
        for binary in plan.binaries:
            self.add(binary, f"/usr/bin/{os.path.basename(binary)}", recursive=False)
        for host, inside in plan.files:
            self.add(host, inside, recursive=False)

    def _plan_fakeroot(self) -> None:
        """The host's fakeroot script, daemon and library (and a build's
        database) in the libs directory, as Apptainer binds them."""
        tool = self.spec.userns.tool
        assert tool is not None
        self.libs += [(tool.script, "fakeroot"), (tool.faked, "faked"),
                      (tool.library, "libfakeroot.so")]
        if tool.getopt:
            self.libs.append((tool.getopt, "getopt"))
        if self.spec.userns.state:
            self.libs.append((self.spec.userns.state, FAKEROOT_STATE))

    def _plan_libs(self) -> None:
        """As Apptainer does: a directory of the session, holding one mount
        point per file, goes over /.singularity.d/libs; the host files are
        bound onto those points.  So they need no mount points in the image,
        which --writable (a build's %post) could not create."""
        if not self.libs:
            return
        libs = self.session.sub("libs")
        os.makedirs(libs, exist_ok=True)
        for _host, name in self.libs:
            open(f"{libs}/{name}", "a").close()
        self.add(libs, LIBS_DIR, recursive=False)
        for host, name in self.libs:
            self.add(host, f"{LIBS_DIR}/{name}", recursive=False)

    def _plan_identity(self, lower: str) -> None:
        spec = self.spec
        who = spec.identity
        if who.uid == 0:
            # Root (real, or of a fakeroot namespace) keeps the image's own
            # files, so that package scripts can add users and groups.
            log.debug("Not updating passwd/group files, running as root!")
            return
        for name in ("passwd", "group"):
            try:
                path = lower + resolve_in_root(lower, f"/etc/{name}")
                if not os.path.isfile(path):  # never a FIFO or device of a hostile image
                    raise FileNotFoundError(path)
                with open(path, encoding="utf-8", errors="replace") as handle:
                    current = handle.read(_MAX_IDENTITY_FILE)
            except OSError:
                log.warning("%s file doesn't exist in container, not updating", name)
                continue
            if name == "passwd":
                text = passwd_text(current, who, spec.mounts.home_dest)
            else:
                text = group_text(current, who, _group_names(who.gid, who.groups))
            generated = self.session.sub(f"files/{name}")
            with open(generated, "w", encoding="utf-8") as out:
                out.write(text)
            self.add(generated, f"/etc/{name}", recursive=False)

    # -- 2. mount points in the upper layer ---------------------------------
    def precreate(self, lower: str, upper: str) -> None:
        """Create, in *upper*, each mount point that *lower* lacks."""
        for mount in self.mounts:
            inside = resolve_in_root(lower, mount.dest)
            if os.path.lexists(lower + inside) or os.path.lexists(upper + inside):
                continue
            _create(upper + inside, mount.directory, mount.dest)

    # -- 3. mount ----------------------------------------------------------
    def apply(self, root: str) -> None:
        self.root = root
        for mount in self.mounts:
            host = self._target(mount)
            if host is None:
                continue
            if mount.kind == "dev":
                self._minimal_dev(host)
            elif mount.kind == "sysfs":
                self._sysfs(host)
            elif mount.kind == "bind":
                self._bind(mount, host)

    def _target(self, mount: Mount) -> str | None:
        host = self.root + resolve_in_root(self.root, mount.dest)
        if os.path.lexists(host):
            return host
        if self.spec.mounts.writable or not self.create_missing:
            log.warning("skipping mount of %s: destination doesn't exist in container",
                        mount.dest)
            return None
        _create(host, mount.directory, mount.dest)
        return host

    def _bind(self, mount: Mount, host: str) -> None:
        try:
            linux.bind(mount.source, host, recursive=mount.recursive, readonly=mount.readonly)
        except OSError as err:
            raise ContainerError(f"mount {mount.source}->{mount.dest} error: while mounting "
                                 f"{mount.source}: {err.strerror}") from err

    def _sysfs(self, target: str) -> None:
        try:
            linux.mount("sysfs", target, "sysfs",
                        linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY)
        except OSError as err:
            log.debug("fresh sysfs refused (%s); binding the host's", err)
            linux.bind("/sys", target)

    def _minimal_dev(self, dev: str) -> None:
        linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=0755")
        nodes = [(f"/dev/{n}", f"/dev/{n}") for n in _DEV_NODES if os.path.exists(f"/dev/{n}")]
        if self.spec.gpu is not None:
            nodes += [(host, inside) for host, inside in self.spec.gpu.device_binds()
                      if inside.startswith("/dev/")]
        for node, inside in nodes:
            target = dev + inside[4:]
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
            linux.bind(node, target, recursive=False, extra=linux.MS_NOSUID)
        for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                           ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                           ("ptmx", "pts/ptmx")):
            os.symlink(link, f"{dev}/{name}")
        os.mkdir(f"{dev}/shm")
        os.chmod(f"{dev}/shm", 0o1777)
        os.mkdir(f"{dev}/pts", 0o755)
        try:
            linux.mount("devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                        "newinstance,ptmxmode=0666,mode=0620")
        except OSError as err:
            log.debug("no devpts in the container: %s", err)
        if os.isatty(0):
            os.close(os.open(f"{dev}/console", os.O_CREAT | os.O_WRONLY, 0o600))
            linux.bind(os.ttyname(0), f"{dev}/console", recursive=False)

    # -- what the container process runs ------------------------------------
    def finish(self) -> Plan:
        spec = self.spec
        cwd = self._working_dir()
        scripts = envmod.env_script_paths(self.root, spec.process.app)
        has_shell = _executable(self.root, "/bin/sh")
        argv = self._action_argv(has_shell)
        base = envmod.container_env(spec, cwd)
        if not (spec.mounts.writable or spec.mounts.writable_tmpfs or
                any(not o.readonly for o in spec.mounts.overlays)):
            try:
                linux.remount(self.root, linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)
            except OSError as err:
                log.debug("could not make the root read-only: %s", err)
        mount_proc = spec.namespaces.pid and "proc" not in spec.mounts.no_mount
        return Plan(self.root, cwd, argv, base, has_shell, scripts, mount_proc,
                    self._fakeroot_wrapper(has_shell, base))

    def _fakeroot_wrapper(self, has_shell: bool, env: dict[str, str]) -> tuple[str, ...]:
        """``fakeroot -f faked -l lib [-i db -s db]`` inside, and its variables."""
        spec = self.spec
        tool = spec.userns.tool
        if tool is None:
            return ()
        loader = tool.interpreter
        if not has_shell or (loader and not os.path.exists(
                self.root + resolve_in_root(self.root, loader))):
            # The host's fakeroot is a shell script and dynamically linked
            # programs: a static image (busybox) cannot run them.
            log.info("the fakeroot command cannot run in this container (it needs /bin/sh "
                     "and %s): using only the root-mapped namespace", loader or "a C library")
            return ()
        env["PATH"] = f"{env.get('PATH') or DEFAULT_PATH}:{LIBS_DIR}"
        # libfakeroot must not try real changes of owner: in a root-mapped
        # namespace they fail for every id but 0 (Apptainer sets it too).
        env["FAKEROOTDONTTRYCHOWN"] = "1"
        wrapper = [f"{LIBS_DIR}/fakeroot", "-f", f"{LIBS_DIR}/faked",
                   "-l", f"{LIBS_DIR}/libfakeroot.so"]
        if spec.userns.state:
            state = f"{LIBS_DIR}/{FAKEROOT_STATE}"
            wrapper += ["-i", state, "-s", state]
        return tuple(wrapper)

    def _working_dir(self) -> str:
        spec = self.spec
        if spec.process.pwd:
            if not os.path.isdir(self.root + resolve_in_root(self.root, spec.process.pwd)):
                raise ContainerError(f"failed to set working directory: chdir {spec.process.pwd}: "
                                     "no such file or directory")
            return spec.process.pwd
        wanted = spec.mounts.home_dest if spec.mounts.contain else spec.process.cwd
        for candidate in (wanted, spec.mounts.home_dest):
            if candidate and os.path.isdir(self.root + resolve_in_root(self.root, candidate)):
                return candidate
        return "/"

    def _action_argv(self, has_shell: bool) -> list[str]:
        spec = self.spec
        if spec.process.action == "exec":
            return list(spec.process.argv)
        if spec.process.action == "shell":
            return self._shell_argv(has_shell)
        if spec.process.action == "test":
            return self._script_argv(("/.singularity.d/test",), test=True)
        app = spec.process.app
        candidates = ((f"/scif/apps/{app}/scif/runscript",) if app else (
            "/.singularity.d/runscript", "/apptainer", "/singularity"))
        return self._script_argv(candidates, test=False)

    def _script_argv(self, candidates: tuple[str, ...], *, test: bool) -> list[str]:
        for path in candidates:
            host = self.root + resolve_in_root(self.root, path)
            if os.path.isfile(host):
                if os.access(host, os.X_OK):
                    return [path, *self.spec.process.argv]
                return ["/bin/sh", path, *self.spec.process.argv]
        if test:
            raise NoTestScript()
        if self.spec.process.app:
            raise NotFoundError(f"no runscript for app {self.spec.process.app} in the container")
        if _executable(self.root, "/bin/sh"):
            return ["/bin/sh", *self.spec.process.argv]
        raise NotFoundError("no runscript and no /bin/sh executable found in the container")

    def _shell_argv(self, has_shell: bool) -> list[str]:
        spec = self.spec
        if spec.process.shell:
            return [spec.process.shell, *spec.process.argv]
        if _executable(self.root, "/bin/bash"):
            return ["/bin/bash", "--norc", *spec.process.argv]
        if has_shell:
            return ["/bin/sh", *spec.process.argv]
        raise NotFoundError("no shell found in the container (no /bin/bash nor /bin/sh)")


def _create(host: str, directory: bool, dest: str) -> None:
    try:
        if directory:
            os.makedirs(host, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(host), exist_ok=True)
            os.close(os.open(host, os.O_CREAT | os.O_WRONLY, 0o644))
    except OSError as err:
        raise ContainerError(f"could not create mount point {dest} in the container: "
                             f"{err.strerror}") from err


def _executable(root: str, path: str) -> bool:
    return os.access(root + resolve_in_root(root, path), os.X_OK)


def _group_names(gid: int, groups: tuple[int, ...]) -> dict[int, str]:
    import grp

    names: dict[int, str] = {}
    for number in (gid, *groups):
        try:
            names[number] = grp.getgrgid(number).gr_name
        except KeyError:
            continue
    return names
