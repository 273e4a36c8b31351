"""A request to run a container, and the pure function that checks it and
turns it into the :class:`~capsa.runtime.spec.ContainerSpec` the launcher
runs.

:class:`ContainerRequest` is what a caller asks for, in the words of
``exec|run|shell|test`` and ``instance start``'s flags (the CLI fills it
from argv and the environment; a Python caller fills it directly).
:class:`Host` is the caller's side: its environment, working directory and
the site's settings.  :func:`container_spec` decides everything else (the
identity and user namespace, binds, the environment passed in, GPUs, the
network) and raises from :mod:`capsa.errors` on bad input; it opens the
image (once: the spec holds the descriptor) and looks at the host's files,
but makes no namespace and mounts nothing.

On the exec path: :class:`capsa.record.Record` values (named tuples, no
dataclasses), and the GPU and cgroup modules only when asked for.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from typing import TYPE_CHECKING

from capsa import report
from capsa.errors import ContainerError, NotFoundError, UsageError
from capsa.record import Record
from capsa.runtime.spec import (
    BindSpec,
    ContainerSpec,
    EnvironmentSpec,
    Identity,
    ImageSpec,
    MountSpec,
    NamespaceSpec,
    OverlaySpec,
    ProcessSpec,
    UserNamespace,
)
from capsa.site import DEFAULT_SETTINGS, SiteSettings

if TYPE_CHECKING:
    from capsa.runtime.cgroups import Limits
    from capsa.runtime.gpu import GpuPlan

log = report.getLogger("capsa.runtime.request")

NO_MOUNT_NAMES = ("proc", "sys", "dev", "devpts", "home", "tmp", "hostfs", "cwd",
                  "bind-paths")
GPU_VENDORS = ("nv", "nvccli", "rocm")


class ContainerRequest(Record):
    """What the caller asks for; every field has Apptainer's flag's meaning."""

    image: str                              # a SIF, squashfs or sandbox path
    action: str = "exec"                    # exec, run, shell, test, start
    args: tuple[str, ...] = ()              # the command (exec) or its arguments
    image_ref: str = ""                     # how the user named it (a URI), if not *image*
    image_fd: int | None = None             # *image* already open (and checked)
    bind: tuple[str, ...] = ()              # -B specs, as written (comma lists allowed)
    mount: tuple[str, ...] = ()             # --mount specs
    contain: bool = False
    containall: bool = False
    compat: bool = False
    cleanenv: bool = False
    env: tuple[str, ...] = ()               # --env K=V[,K=V]
    env_file: tuple[str, ...] = ()
    no_env: tuple[str, ...] = ()            # names (comma lists allowed)
    workdir: str | None = None
    scratch: tuple[str, ...] = ()
    no_home: bool = False
    home: str | None = None                 # SRC[:DEST]
    no_mount: tuple[str, ...] = ()
    pwd: str | None = None
    writable: bool = False
    writable_tmpfs: bool = False
    overlay: tuple[str, ...] = ()           # DIR[:ro]
    fakeroot: bool = False
    ignore_subuid: bool = False
    ignore_fakeroot_command: bool = False
    fakeroot_state: str | None = None       # a build's fakeroot(1) database
    pid: bool = False
    ipc: bool = False
    no_init: bool = False
    hostname: str | None = None
    app: str | None = None
    shell: str | None = None
    unsquash: bool = False
    no_eval: bool = False
    gpus: tuple[str, ...] = ()              # "nv", "nvccli", "rocm"
    net: bool = False
    network: str | None = None
    network_args: tuple[str, ...] = ()
    limits: Limits | None = None            # resource limits, parsed and usable here
    share_ns: str | None = None             # --share-ns KEY
    no_share_ns: bool = False
    sharens: bool = False                   # share with the containers of the same parent


class Host(Record):
    """The caller's side of a run: environment, working directory, site."""

    environ: Mapping[str, str]
    cwd: str
    site: SiteSettings = DEFAULT_SETTINGS

    @classmethod
    def current(cls, site: SiteSettings = DEFAULT_SETTINGS) -> Host:
        """This process's environment and working directory."""
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "/"
        return cls(os.environ, cwd, site)


def expand(request: ContainerRequest) -> ContainerRequest:
    """``--compat`` and ``--containall`` as the flags they stand for."""
    if request.compat:
        request = request._replace(containall=True, writable_tmpfs=True, no_init=True,
                                   no_eval=True)
    if request.containall:
        request = request._replace(contain=True, pid=True, ipc=True, cleanenv=True)
    return request


def container_spec(request: ContainerRequest, host: Host,
                   image: ImageSpec | None = None) -> ContainerSpec:
    """Check *request* and turn it into what the launcher runs; bad input is
    one error.  The image is opened here unless *image* is given."""
    from capsa.runtime import image as images

    request = expand(request)
    if request.action == "exec" and not request.args:
        raise UsageError("exec requires a command to run: exec [options] IMAGE COMMAND [ARGS]")
    if request.pwd and not request.pwd.startswith("/"):
        raise UsageError(f"--pwd must be an absolute path: {request.pwd}")
    if image is None:
        image = images.resolve(request.image, fd=request.image_fd)
    gpu = _gpu(request, host)
    if gpu is not None and "nvccli" in request.gpus:
        request = request._replace(writable_tmpfs=True)  # as Apptainer forces for --nvccli
    userns, identity = _user(request)
    return ContainerSpec(
        image=image,
        process=ProcessSpec(request.action, request.args, host.cwd, request.pwd,
                            request.app, request.shell, request.no_init),
        mounts=_mounts(request, host, identity),
        environment=_environment(request, host),
        identity=identity, userns=userns,
        namespaces=NamespaceSpec(request.pid, request.ipc, _network(request),
                                 request.hostname),
        gpu=gpu, limits=request.limits, share_key=_share_key(request, host.environ))


# The variables that make a process a rank of a job (sharens.JOB_VARIABLES,
# repeated here: a lone exec does not import that module).
_JOB_VARIABLES = ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_STEP_ID")


def _share_key(request: ContainerRequest, environ: Mapping[str, str]) -> str | None:
    """The key of the container this process shares with the other ranks
    of its job on this node (None: one of its own)."""
    if request.no_share_ns or request.action == "start":
        return None
    explicit = request.share_ns
    if not (explicit or request.sharens) and not any(environ.get(n) for n in _JOB_VARIABLES):
        return None
    from capsa.runtime.sharens import job_key, parent_key

    return job_key(environ, explicit or (parent_key() if request.sharens else None))


# -- mounts ----------------------------------------------------------------------

def _mounts(request: ContainerRequest, host: Host, identity: Identity) -> MountSpec:
    from capsa.userdirs import scratch

    home_source, home_dest = _home(request, identity.home)
    return MountSpec(
        home_source=home_source, home_dest=home_dest, binds=_binds(request, host.cwd),
        overlays=tuple(_overlay(o) for o in request.overlay),
        scratch=tuple(_absolute(d, "--scratch") for v in request.scratch
                      for d in v.split(",") if d),
        workdir=_workdir(request.workdir), no_mount=_no_mount(request),
        contain=request.contain, writable=request.writable,
        writable_tmpfs=request.writable_tmpfs,
        use_fuse=not request.unsquash and host.site.fuse, use_overlay=host.site.overlay,
        tmpdir=scratch(host.environ, existing_only=True))


def _binds(request: ContainerRequest, cwd: str) -> tuple[BindSpec, ...]:
    from capsa.runtime import binds

    found = binds.parse_binds(list(request.bind), cwd)
    found += [binds.parse_mount(m, cwd) for m in request.mount]
    for bind in found:
        if not os.path.exists(bind.source):
            raise ContainerError(f"container creation failed: mount hook function failure: "
                                 f"mount {bind.source}->{bind.dest} error: while mounting "
                                 f"{bind.source}: mount source {bind.source} doesn't exist")
    return tuple(found)


def _home(request: ContainerRequest, default: str) -> tuple[str, str]:
    """(host directory, where inside) of the home mount: the caller's home
    at its own place (at /root with ``--fakeroot``), or ``-H SRC[:DEST]``."""
    real_home = default
    if request.fakeroot:
        try:
            real_home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            real_home = "/root"
    if not request.home:
        return real_home, default
    source, _, dest = request.home.partition(":")
    source = os.path.abspath(source)
    dest = dest or source
    if not dest.startswith("/"):
        raise UsageError(f"home destination {dest} must be an absolute path")
    if not os.path.isdir(source):
        raise ContainerError(f"container creation failed: home directory {source} "
                             "doesn't exist")
    return source, os.path.normpath(dest)


def _no_mount(request: ContainerRequest) -> frozenset[str]:
    names: set[str] = set()
    for value in request.no_mount:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if item not in NO_MOUNT_NAMES and not item.startswith("/"):
                raise UsageError(f"invalid --no-mount value {item!r}: expected one of "
                                 f"{', '.join(NO_MOUNT_NAMES)} or an absolute path")
            names.add(item)
    if request.no_home:
        names.add("home")
    return frozenset(names)


def _overlay(value: str) -> OverlaySpec:
    path, _, mode = value.rpartition(":") if value.endswith((":ro", ":rw")) else (value, "", "")
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise UsageError(f"overlay {path}: only directory overlays are supported")
        raise ContainerError(f"overlay {path} does not exist")
    return OverlaySpec(path, readonly=(mode == "ro"))


def _workdir(value: str | None) -> str | None:
    if not value:
        return None
    path = os.path.abspath(value)
    if not os.path.isdir(path):
        raise NotFoundError(f"workdir {path} does not exist")
    return path


def _absolute(path: str, flag: str) -> str:
    if not path.startswith("/"):
        raise UsageError(f"{flag} {path}: must be an absolute path")
    return os.path.normpath(path)


# -- environment -------------------------------------------------------------------

def _environment(request: ContainerRequest, host: Host) -> EnvironmentSpec:
    from capsa.runtime import env

    forced = env.injected(host.environ, list(request.env_file), list(request.env))
    if request.no_eval:  # OCI runscripts then skip their eval
        forced["APPTAINER_NO_EVAL"] = forced["SINGULARITY_NO_EVAL"] = "1"
    blocked = [n.strip() for value in request.no_env for n in value.split(",") if n.strip()]
    passed = env.host_passthrough(host.environ, cleanenv=request.cleanenv, blocked=blocked)
    ref = request.image_ref or os.path.abspath(request.image)
    return EnvironmentSpec(ref, tuple(forced.items()), tuple(passed.items()))


# -- who runs inside -----------------------------------------------------------------

def _user(request: ContainerRequest) -> tuple[UserNamespace, Identity]:
    """The user namespace to create, and fakeroot(1) where ids are faked."""
    from capsa import userns

    state = os.path.abspath(request.fakeroot_state) if request.fakeroot_state else None
    if request.fakeroot:
        plan = userns.plan_fakeroot(ignore_subuid=request.ignore_subuid,
                                    ignore_command=request.ignore_fakeroot_command)
        return (UserNamespace(True, plan.idmap, plan.tool, state),
                Identity(0, 0, (), "root", "root", "/root", "/bin/sh"))
    if os.geteuid() == 0:  # real root, or root of a build's namespace already
        return UserNamespace(), _caller()
    return UserNamespace(idmap=userns.own_map(os.geteuid(), os.getegid())), _caller()


def _caller() -> Identity:
    uid, gid = os.getuid(), os.getgid()
    groups = tuple(g for g in os.getgroups() if g != gid)
    try:
        entry = pwd.getpwuid(uid)
    except KeyError as err:
        raise ContainerError(f"could not find the user with uid {uid} "
                             "in the passwd database") from err
    return Identity(uid, gid, groups, entry.pw_name, entry.pw_gecos, entry.pw_dir,
                    entry.pw_shell or "/bin/sh")


# -- network and GPUs ----------------------------------------------------------------

def _network(request: ContainerRequest) -> bool:
    """Whether the container gets a network namespace of its own.

    As in Apptainer: ``--network``/``--network-args`` imply ``--net``, whose
    default network is ``bridge``; ``--fakeroot`` on an installation without
    setuid falls back to ``none``.  ``none`` (a namespace with only ``lo``)
    needs nothing; every other network is made by CNI plugins, which capsa
    does not run: unprivileged users get Apptainer's refusal, root an error
    that says so."""
    net = request.net
    for flag, given in (("--network", request.network),
                        ("--network-args", request.network_args)):
        if given and not net:
            log.info("Setting --net (required by %s)", flag)
            net = True
    if not net:
        return False
    names = [n.strip() for n in (request.network or "bridge").split(",") if n.strip()]
    if request.fakeroot and names != ["none"]:
        log.warning("fakeroot with unprivileged installation or 'allow setuid = no' could "
                    "not use 'fakeroot' network, fallback to 'none' network")
        names = ["none"]
    if names == ["none"]:
        return True
    if os.geteuid() != 0:
        raise ContainerError("container creation failed: network requires root or a suid "
                             "installation with /etc/subuid --fakeroot; non-root users can "
                             "only use --network=none unless permitted by the administrator")
    cni = ", ".join(n for n in names if n != "none")
    raise ContainerError(f"container creation failed: network setup failed: the {cni} "
                         "network needs CNI plugins, which capsa does not run; "
                         "use --network=none for a network namespace with loopback only")


def _gpu(request: ContainerRequest, host: Host) -> GpuPlan | None:
    """The GPU plan for --nv / --nvccli / --rocm (several: merged, as Apptainer
    binds both drivers when asked for both)."""
    vendors = [v for v in ("nvccli", "nv", "rocm") if v in request.gpus]
    if "nvccli" in vendors and "nv" in vendors:
        vendors.remove("nv")
    if not vendors:
        return None
    from capsa.runtime.gpu import gpu_plan

    site = host.site
    plans = [gpu_plan(vendor, contain=request.contain,
                      environ=host.environ, root=site.gpu_root, ldconfig=site.ldconfig,
                      site_dir=site.config_dir) for vendor in vendors]
    plan = plans[0]
    for other in plans[1:]:
        plan = plan.merged(other)
    return plan
