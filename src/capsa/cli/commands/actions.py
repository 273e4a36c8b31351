"""``exec``, ``run``, ``shell`` and ``test``: start a container from an image.

All four share their flags (Apptainer's names) and build one
:class:`~capsa.runtime.spec.ContainerSpec`; the launcher does the rest.
This module is on the hot path of ``capsa exec``: it imports only the
runtime pieces it uses, and the GPU module only for ``--nv``/``--rocm``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from typing import TYPE_CHECKING

from capsa.errors import ContainerError, NotFoundError, UsageError

if TYPE_CHECKING:
    from capsa.runtime.cgroups import Limits
    from capsa.runtime.gpu import GpuPlan
    from capsa.runtime.spec import ContainerSpec, Identity, OverlaySpec
    from capsa.userns import FakerootTool, IdMap

HELP = "Run a command, the runscript, a shell or the test in a container"

_NO_MOUNT = ("proc", "sys", "dev", "devpts", "home", "tmp", "hostfs", "cwd", "bind-paths")
# Boolean flags that Apptainer also reads from APPTAINER_<NAME> / SINGULARITY_<NAME>.
_ENV_FLAGS = ("contain", "containall", "cleanenv", "no_home", "writable", "writable_tmpfs",
              "fakeroot", "pid", "ipc", "no_init", "unsquash", "nv", "nvccli", "rocm",
              "ignore_subuid", "ignore_fakeroot_command", "sharens")
# Apptainer's resource limit flags, applied through a cgroup (capsa.runtime.cgroups).
_LIMIT_FLAGS = {
    "--cpus": "number of CPUs available to the container",
    "--cpu-shares": "CPU shares for the container (default -1)",
    "--cpuset-cpus": "list of host CPU ID ranges to execute the container on (1,2,3-4)",
    "--cpuset-mems": "list of host memory nodes to execute the container on (1,2,3-4)",
    "--memory": "maximum memory the container may use (1G, 512M...)",
    "--memory-reservation": "memory soft limit (1G, 512M...)",
    "--memory-swap": "swap limit: memory plus swap (1G...), -1 for unlimited",
    "--pids-limit": "limit the number of processes in the container",
    "--blkio-weight": "block IO relative weight in range 10-1000, 0 to disable",
    "--blkio-weight-device": "device specific block IO relative weight (DEVICE:WEIGHT)",
}


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-B", "--bind", action="append", default=[], metavar="SPEC",
        help="bind a host path: src[:dest[:ro|rw]], repeatable, comma lists")
    add("--mount", action="append", default=[], metavar="SPEC",
        help="bind mount: type=bind,source=S,destination=D[,ro]")
    add("-c", "--contain", action="store_true", help="minimal /dev, empty /tmp and $HOME")
    add("-C", "--containall", action="store_true",
        help="--contain plus PID and IPC namespaces and --cleanenv")
    add("-e", "--cleanenv", action="store_true", help="do not pass the host environment")
    add("--env", action="append", default=[], metavar="K=V", help="set variables inside")
    add("--env-file", action="append", default=[], metavar="FILE",
        help="set variables inside from a file of K=V lines")
    add("--no-env", action="append", default=[], metavar="LIST",
        help="host variables not to pass (comma-separated)")
    add("-W", "--workdir", metavar="DIR", help="where --contain puts /tmp, /var/tmp, $HOME")
    add("-S", "--scratch", action="append", default=[], metavar="DIR",
        help="an empty scratch directory at DIR inside (repeatable, comma lists)")
    add("--no-home", action="store_true", help="do not mount the home directory")
    add("-H", "--home", metavar="SRC[:DEST]", help="home directory to mount")
    add("--no-mount", action="append", default=[], metavar="LIST",
        help=f"disable default mounts: {','.join(_NO_MOUNT)} or a path")
    add("--pwd", "--cwd", dest="pwd", metavar="DIR", help="working directory inside")
    add("-w", "--writable", action="store_true", help="a writable sandbox")
    add("--writable-tmpfs", action="store_true", help="a temporary writable overlay")
    add("-o", "--overlay", action="append", default=[], metavar="DIR[:ro]",
        help="a directory overlay")
    add("-f", "--fakeroot", action="store_true", help="run as uid 0 inside")
    add("--ignore-subuid", action="store_true",
        help="with --fakeroot, ignore /etc/subuid and /etc/subgid (root-mapped namespace)")
    add("--ignore-fakeroot-command", action="store_true",
        help="with --fakeroot, do not use the host's fakeroot command")
    # A build's fakeroot database, loaded and saved by fakeroot(1) in %post.
    add("--fakeroot-state", metavar="FILE", help=argparse.SUPPRESS)
    add("-p", "--pid", action="store_true", help="a new PID namespace")
    add("-i", "--ipc", action="store_true", help="a new IPC namespace")
    add("--no-init", action="store_true", help="no init process as PID 1 with --pid")
    add("--hostname", metavar="NAME", help="the container's hostname")
    add("--app", metavar="NAME", help="run an app of the container (SCIF)")
    add("-s", "--shell", metavar="PATH", help="the shell for 'shell'")
    add("--unsquash", action="store_true", help="extract the image to a temporary sandbox")
    add("-u", "--userns", action="store_true", help="use a user namespace (always)")
    add("--compat", action="store_true", help="-C --writable-tmpfs --no-init")
    add("--no-eval", action="store_true", help="no shell evaluation of OCI runscript args")
    add("--no-umask", action="store_true", help=argparse.SUPPRESS)
    add("--nv", action="store_true", help="bind the NVIDIA driver")
    add("--nvccli", action="store_true", help="NVIDIA through nvidia-container-cli")
    add("--rocm", action="store_true", help="bind the ROCm driver")
    add("-n", "--net", action="store_true",
        help="a new network namespace (a bridge network, by default)")
    add("--network", metavar="TYPE",
        help="network type: none (only the loopback interface); bridge, ptp, ipvlan, "
             "macvlan and fakeroot need CNI plugins, which capsa does not run")
    add("--network-args", action="append", default=[], metavar="ARGS",
        help="arguments for the network's CNI plugins")
    for flag, text in _LIMIT_FLAGS.items():
        if flag == "--blkio-weight-device":
            add(flag, metavar="VALUE", action="append", help=text)
        else:
            add(flag, metavar="VALUE", help=text)
    add("--oom-kill-disable", action="store_true", help="disable OOM killer")
    add("--share-ns", metavar="KEY",
        help="share one container (user namespace, image mount) with the other processes "
             "on this node that give the same KEY and options (the ranks of a Slurm job "
             "step or an MPI job share theirs without it)")
    add("--no-share-ns", action="store_true",
        help="a container of its own, even as a rank of a Slurm or MPI job")
    add("--sharens", action="store_true",
        help="share the namespace and image with other containers launched from the same "
             "parent process")
    # Not registry_flags.add_registry_flags: that module stays off the exec
    # path (tests/cli/test_import_budget.py); registry_options() reads these.
    add("--no-https", action="store_true", help="use plain HTTP for docker:// registries")
    add("--docker-login", action="store_true", help="log in to the registry interactively")
    add("--authfile", metavar="FILE", help="registry credentials file")
    add("--require-signed", metavar="KEYRING",
        help="refuse images not signed by a key of KEYRING (OpenPGP keyring or PEM key)")
    add("image", help="SIF file, sandbox directory, or docker://, oras:// ... URI")
    add("args", nargs=argparse.REMAINDER, help="command and arguments")


def _env_flag(name: str) -> bool:
    for prefix in ("APPTAINER_", "SINGULARITY_"):
        value = os.environ.get(prefix + name.upper())
        if value is not None:
            return value.lower() in ("1", "true", "yes", "on")
    return False


def _apply_env_defaults(args: argparse.Namespace) -> None:
    for name in _ENV_FLAGS:
        if not getattr(args, name) and _env_flag(name):
            setattr(args, name, True)
    for name in ("APPTAINER_BIND", "APPTAINER_BINDPATH", "SINGULARITY_BIND",
                 "SINGULARITY_BINDPATH"):
        if os.environ.get(name):
            args.bind.insert(0, os.environ[name])
            break
    if not args.pwd:  # Apptainer's --pwd also reads APPTAINER_PWD and APPTAINER_TARGET_PWD
        args.pwd = next((os.environ[p + n] for n in ("PWD", "TARGET_PWD")
                         for p in ("APPTAINER_", "SINGULARITY_") if os.environ.get(p + n)), None)
    mounts = os.environ.get("APPTAINER_MOUNT") or os.environ.get("SINGULARITY_MOUNT")
    if mounts:
        args.mount[:0] = [line for line in mounts.splitlines() if line.strip()]
    if args.compat:
        args.containall = args.writable_tmpfs = args.no_init = True
    if args.containall:
        args.contain = args.pid = args.ipc = args.cleanenv = True


def run(args: argparse.Namespace) -> int:
    _apply_env_defaults(args)
    if args.command == "exec" and not args.args:
        raise UsageError("exec requires a command to run: exec [options] IMAGE COMMAND [ARGS]")
    if args.image.startswith("instance://"):  # join a running instance
        from capsa.cli.commands.instance import run_in_instance

        if _limit_flags(args):
            from capsa.cli import log

            log.warning("Resource limits & cgroups configuration are only applied to "
                        "instances at instance start.")
            _clear_limits(args)

        return run_in_instance(args)
    pulled = _pull_uri(args) if _is_uri(args.image) else None
    try:
        _enforce_signing_policy(args)
        spec = build_spec(args)
        from capsa.runtime.launcher import launch

        status = launch(spec)
    finally:
        if pulled is not None:
            os.unlink(pulled)
    # Everything is cleaned up and flushed: skip the interpreter's teardown
    # (module and object finalisation costs ~10 ms, a third of a start).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _enforce_signing_policy(args: argparse.Namespace) -> None:
    """Refuse unsigned images where the site (capsa.conf) or the user asks.

    The configuration file is only read, and the integrity package only
    imported, when there is something to check: the exec path stays lean.
    """
    config = args.global_options.config
    keyring: str | None = args.require_signed or os.environ.get("APPTAINER_REQUIRE_SIGNED")
    from capsa.site import config_dir

    site_config = os.path.join(config_dir(), "capsa.conf")
    if keyring is None and config is None and not os.path.exists(site_config):
        return
    from capsa.integrity.policy import enforce_signed, load_policy

    if keyring is None:
        policy = load_policy(config)
        if not policy.required:
            return
        keyring = policy.keyring
    enforce_signed(args.image, keyring_path=keyring)


_LOCAL_SCHEMES = ("oci:", "oci-archive:", "docker-archive:")


def _is_uri(image: str) -> bool:
    return "://" in image or (image.startswith(_LOCAL_SCHEMES) and not os.path.exists(image))


def _pull_uri(args: argparse.Namespace) -> str | None:
    """``docker://`` and friends: run the image from the cache, as Apptainer
    does; without a usable cache (or for other schemes), pull into a
    temporary SIF and return its path, for removal after the run."""
    from pathlib import Path

    from capsa.cli.commands.pull import tmpdir_of, usable_cache
    from capsa.cli.registry_flags import registry_options
    from capsa.pull import PullOptions, cached_image, pull, split_uri
    from capsa.runtime.mounts import make_temp_dir

    scheme, _ = split_uri(args.image)  # unsupported schemes: UsageError before any work
    cache = usable_cache()
    tmpdir = tmpdir_of(args)
    options = PullOptions(cache=cache, tmpdir=tmpdir, registry=registry_options(args))
    args.image_ref = args.image
    if scheme == "docker" and cache is not None:
        args.image = str(cached_image(args.image, options))
        return None
    work = make_temp_dir(str(tmpdir), "capsa-pull-")
    dest = Path(work) / "image.sif"
    try:
        pull(args.image, dest, options)
        final = f"{work}.sif"
        os.rename(dest, final)
    finally:
        if dest.exists():
            dest.unlink()
        os.rmdir(work)
    args.image = final
    return final


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "/"


def build_spec(args: argparse.Namespace) -> ContainerSpec:
    """Check the request and turn it into a ContainerSpec (bad input -> errors)."""
    from capsa.runtime import binds, env, image
    from capsa.runtime.spec import ContainerSpec

    cwd = _cwd()
    img = image.resolve(args.image)
    bind_list = binds.parse_binds(args.bind, cwd)
    bind_list += [binds.parse_mount(m, cwd) for m in args.mount]
    for bind in bind_list:
        if not os.path.exists(bind.source):
            raise ContainerError(f"container creation failed: mount hook function failure: "
                                 f"mount {bind.source}->{bind.dest} error: while mounting "
                                 f"{bind.source}: mount source {bind.source} doesn't exist")
    identity = _identity(args.fakeroot)
    home_source, home_dest = _home(args, identity.home)
    no_mount = _no_mount(args)
    forced = env.injected(os.environ, args.env_file, args.env)
    if args.no_eval or args.compat:  # OCI runscripts then skip their eval
        forced["APPTAINER_NO_EVAL"] = forced["SINGULARITY_NO_EVAL"] = "1"
    blocked = [n.strip() for value in args.no_env for n in value.split(",") if n.strip()]
    host = env.host_passthrough(os.environ, cleanenv=args.cleanenv, blocked=blocked)
    workdir = _workdir(args.workdir)
    scratch = tuple(_absolute(d, "--scratch") for v in args.scratch for d in v.split(",") if d)
    overlays = tuple(_overlay(o) for o in args.overlay)
    net_ns = _network(args)
    limits = _resource_limits(args)
    idmap, fakeroot_tool = _user_namespace(args)
    if args.pwd and not args.pwd.startswith("/"):
        raise UsageError(f"--pwd must be an absolute path: {args.pwd}")
    return ContainerSpec(
        image=img, image_ref=getattr(args, "image_ref", None) or os.path.abspath(args.image),
        action=args.command,
        argv=tuple(args.args), identity=identity, cwd=cwd,
        home_source=home_source, home_dest=home_dest, binds=tuple(bind_list),
        env=tuple(forced.items()), host_env=tuple(host.items()), pwd=args.pwd,
        hostname=args.hostname, app=args.app, shell=args.shell or _shell_env(),
        overlays=overlays, workdir=workdir, scratch=scratch, no_mount=no_mount,
        contain=args.contain, pid_ns=args.pid,
        ipc_ns=args.ipc, net_ns=net_ns, no_init=args.no_init, writable=args.writable,
        writable_tmpfs=args.writable_tmpfs, fakeroot=args.fakeroot,
        use_fuse=not args.unsquash, gpu=_gpu(args), limits=limits, idmap=idmap,
        fakeroot_tool=fakeroot_tool,
        fakeroot_state=os.path.abspath(args.fakeroot_state) if args.fakeroot_state else None,
        share_key=_share_key(args),
    )


# The variables that make a process a rank of a job (sharens.JOB_VARIABLES,
# repeated here: a lone exec does not import that module).
_JOB_VARIABLES = ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_STEP_ID")


def _share_key(args: argparse.Namespace) -> str | None:
    """The key of the container this process shares with the other ranks
    of its job on this node (None: one of its own)."""
    if getattr(args, "no_share_ns", False):
        return None
    explicit = getattr(args, "share_ns", None)
    parent = getattr(args, "sharens", False)
    if not (explicit or parent) and not any(os.environ.get(name) for name in _JOB_VARIABLES):
        return None
    from capsa.runtime.sharens import job_key, parent_key

    return job_key(os.environ, explicit or (parent_key() if parent else None))


def _user_namespace(args: argparse.Namespace) -> tuple[IdMap | None, FakerootTool | None]:
    """The user namespace to create, and fakeroot(1) where ids are faked."""
    from capsa import userns

    if args.fakeroot:
        plan = userns.plan_fakeroot(ignore_subuid=args.ignore_subuid,
                                    ignore_command=args.ignore_fakeroot_command)
        return plan.idmap, plan.tool
    if os.geteuid() == 0:
        return None, None  # real root, or root of a build's namespace already
    return userns.own_map(os.geteuid(), os.getegid()), None


def _workdir(value: str | None) -> str | None:
    value = value or os.environ.get("APPTAINER_WORKDIR") or None
    if value is None:
        return None
    path = os.path.abspath(value)
    if not os.path.isdir(path):
        raise NotFoundError(f"workdir {path} does not exist")
    return path


def _absolute(path: str, flag: str) -> str:
    if not path.startswith("/"):
        raise UsageError(f"{flag} {path}: must be an absolute path")
    return os.path.normpath(path)


def _network(args: argparse.Namespace) -> bool:
    """Whether the container gets a network namespace of its own.

    As in Apptainer: ``--network``/``--network-args`` imply ``--net``, whose
    default network is ``bridge``; ``--fakeroot`` on an installation without
    setuid falls back to ``none``.  ``none`` (a namespace with only ``lo``)
    needs nothing; every other network is made by CNI plugins, which capsa
    does not run: unprivileged users get Apptainer's refusal, root a FATAL
    that says so."""
    from capsa.cli import log

    network = args.network or _env_value("NETWORK")
    network_args = [*args.network_args, *filter(None, [_env_value("NETWORK_ARGS")])]
    net = args.net or _env_flag("net") or _env_flag("unshare_net")
    for flag, given in (("--network", network), ("--network-args", network_args)):
        if given and not net:
            log.info(f"Setting --net (required by {flag})")
            net = True
    if not net:
        return False
    names = [n.strip() for n in (network or "bridge").split(",") if n.strip()]
    if args.fakeroot and names != ["none"]:
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


def _env_value(name: str) -> str | None:
    for prefix in ("APPTAINER_", "SINGULARITY_"):
        value = os.environ.get(prefix + name)
        if value:
            return value
    return None


def _limit_flags(args: argparse.Namespace) -> list[str]:
    given = [flag for flag in _LIMIT_FLAGS if getattr(args, _dest(flag))]
    return given + (["--oom-kill-disable"] if args.oom_kill_disable else [])


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _clear_limits(args: argparse.Namespace) -> None:
    for flag in _LIMIT_FLAGS:
        setattr(args, _dest(flag), None)
    args.oom_kill_disable = False


def _resource_limits(args: argparse.Namespace) -> Limits | None:
    """The limit flags (Nextflow passes --cpus and --memory) as cgroup limits,
    checked as Apptainer checks them; None when none is given, or when this
    host gives us no cgroup: then one warning (see log.terminal_warning)."""
    given = _limit_flags(args)
    if not given:
        return None
    from capsa.runtime import cgroups

    limits = _parse_limits(args)
    reason = cgroups.unusable_reason()
    if reason is None:
        return limits
    from capsa.cli import log

    log.terminal_warning(f"resource limits ({', '.join(given)}) are not applied: "
                         f"cannot use cgroups - {reason}")
    return None


def _parse_limits(args: argparse.Namespace) -> Limits:
    from capsa.runtime import cgroups

    def integer(value: str | None, flag: str) -> int | None:
        if value is None:
            return None
        return cgroups.parse_integer(value, flag)

    shares = integer(args.cpu_shares, "cpu-shares")
    pids = integer(args.pids_limit, "pids-limit")
    if pids is not None and pids < -1:
        raise UsageError(f"invalid pids-limit: {pids}")
    weight = cgroups.parse_weight(args.blkio_weight, "blkio-weight") \
        if args.blkio_weight not in (None, "0") else None
    swap = args.memory_swap
    return cgroups.Limits(
        cpu_quota=cgroups.parse_cpus(args.cpus) if args.cpus else None,
        cpu_shares=shares if shares and shares > 0 else None,
        cpuset_cpus=args.cpuset_cpus or None, cpuset_mems=args.cpuset_mems or None,
        memory=cgroups.parse_bytes(args.memory, "memory") if args.memory else None,
        memory_reservation=cgroups.parse_bytes(args.memory_reservation, "memory-reservation")
        if args.memory_reservation else None,
        memory_swap=(-1 if swap == "-1" else cgroups.parse_bytes(swap, "memory-swap"))
        if swap else None,
        oom_kill_disable=args.oom_kill_disable,
        pids=pids if pids else None, blkio_weight=weight,
        blkio_weight_devices=tuple(cgroups.parse_weight_device(d)
                                   for d in args.blkio_weight_device or ()),
    )


def _shell_env() -> str | None:
    return os.environ.get("APPTAINER_SHELL") or os.environ.get("SINGULARITY_SHELL") or None


def _identity(fakeroot: bool) -> Identity:
    from capsa.runtime.spec import Identity

    uid, gid = os.getuid(), os.getgid()
    if fakeroot:
        return Identity(0, 0, (), "root", "root", "/root", "/bin/sh")
    groups = tuple(g for g in os.getgroups() if g != gid)
    try:
        entry = pwd.getpwuid(uid)
    except KeyError as err:
        raise ContainerError(f"could not find the user with uid {uid} "
                             "in the passwd database") from err
    return Identity(uid, gid, groups, entry.pw_name, entry.pw_gecos, entry.pw_dir,
                    entry.pw_shell or "/bin/sh")


def _home(args: argparse.Namespace, default: str) -> tuple[str, str]:
    real_home = default
    if args.fakeroot:
        try:
            real_home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            real_home = "/root"
    if not args.home:
        return real_home, default
    source, _, dest = args.home.partition(":")
    source = os.path.abspath(source)
    dest = dest or source
    if not dest.startswith("/"):
        raise UsageError(f"home destination {dest} must be an absolute path")
    if not os.path.isdir(source):
        raise ContainerError(f"container creation failed: home directory {source} "
                             "doesn't exist")
    return source, os.path.normpath(dest)


def _no_mount(args: argparse.Namespace) -> frozenset[str]:
    names: set[str] = set()
    for value in args.no_mount:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if item not in _NO_MOUNT and not item.startswith("/"):
                raise UsageError(f"invalid --no-mount value {item!r}: expected one of "
                                 f"{', '.join(_NO_MOUNT)} or an absolute path")
            names.add(item)
    if args.no_home:
        names.add("home")
    return frozenset(names)


def _overlay(value: str) -> OverlaySpec:
    from capsa.runtime.spec import OverlaySpec

    path, _, mode = value.rpartition(":") if value.endswith((":ro", ":rw")) else (value, "", "")
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise UsageError(f"overlay {path}: only directory overlays are supported")
        raise ContainerError(f"overlay {path} does not exist")
    return OverlaySpec(path, readonly=(mode == "ro"))


def _gpu(args: argparse.Namespace) -> GpuPlan | None:
    """The GPU plan for --nv / --nvccli / --rocm (several: merged, as Apptainer
    binds both drivers when asked for both)."""
    vendors = [v for v in ("nvccli", "nv", "rocm") if getattr(args, v)]
    if "nvccli" in vendors and "nv" in vendors:
        vendors.remove("nv")
    if not vendors:
        return None
    from capsa.runtime.gpu import gpu_plan

    if "nvccli" in vendors:
        args.writable_tmpfs = True
    plan = gpu_plan(vendors[0], contain=args.contain, environ=os.environ)
    for vendor in vendors[1:]:
        plan = plan.merged(gpu_plan(vendor, contain=args.contain, environ=os.environ))
    return plan
