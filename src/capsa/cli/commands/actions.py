"""``exec``, ``run``, ``shell`` and ``test``: start a container from an image.

All four share their flags (Apptainer's names) and build one
:class:`~capsa.runtime.spec.ContainerSpec`; the launcher does the rest.
This module is on the hot path of ``capsa exec``: it imports only the
runtime pieces it uses, and the GPU module only for ``--nv``/``--rocm``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from capsa.errors import UsageError

if TYPE_CHECKING:
    from capsa.runtime.cgroups import Limits
    from capsa.runtime.request import ContainerRequest
    from capsa.runtime.spec import ContainerSpec, ImageSpec

HELP = "Run a command, the runscript, a shell or the test in a container"

_NO_MOUNT = ("proc", "sys", "dev", "devpts", "home", "tmp", "hostfs", "cwd", "bind-paths")
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
    add("--no-https", "--nohttps", dest="no_https", action="store_true",
        help="use plain HTTP for docker:// registries")
    add("--docker-login", action="store_true", help="log in to the registry interactively")
    add("--docker-username", help=argparse.SUPPRESS)
    add("--docker-password", help=argparse.SUPPRESS)
    add("--authfile", metavar="FILE", help="registry credentials file")
    add("--disable-cache", action="store_true",
        help="do not use or create cached images/blobs")
    add("--require-signed", metavar="KEYRING",
        help="refuse images not signed by a key of KEYRING (OpenPGP keyring or PEM key)")
    add("image", help="SIF file, sandbox directory, or docker://, oras:// ... URI")
    add("args", nargs=argparse.REMAINDER, help="command and arguments")


def run(args: argparse.Namespace) -> int:
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
    from capsa.cli.signals import cleanup_on_termination

    if _is_uri(args.image):
        with cleanup_on_termination():
            pull_uri(args)
    spec = build_spec(args)
    enforce_signing_policy(args, spec)
    from capsa.runtime.launcher import launch

    # SIGTERM or SIGHUP while the session is set up (scancel right after the
    # start) end it as Ctrl-C does, so its directory and mounts go with it;
    # once the container runs, the launcher forwards them to it instead.
    with cleanup_on_termination():
        status = launch(spec)
    # Everything is cleaned up and flushed: skip the interpreter's teardown
    # (module and object finalisation costs ~10 ms, a third of a start).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def enforce_signing_policy(args: argparse.Namespace, spec: ContainerSpec) -> None:
    """Refuse unsigned images where the site (its capsa.conf) or the user
    (``-c``, ``--require-signed``, ``APPTAINER_REQUIRE_SIGNED``) asks; what the
    user asks only adds to the site's rule.  The check reads the image
    through the descriptor it will be mounted from.

    The configuration file is only read, and the integrity package only
    imported, when there is something to check: the exec path stays lean.
    """
    from capsa.cli import environment

    config = args.global_options.config
    # the flag and the variable both add keyrings (neither replaces the other)
    asked = tuple(k for k in (args.require_signed,
                              environment.value(os.environ, "REQUIRE_SIGNED")) if k)
    site = args.site
    if not asked and config is None and not os.path.lexists(site.path("capsa.conf")):
        return
    from capsa.integrity.policy import check_image

    check_image(spec.image.path, fd=spec.image.fd if spec.image.fd >= 0 else None,
                site=site, user_config=config, keyrings=asked)


_LOCAL_SCHEMES = ("oci:", "oci-archive:", "docker-archive:")


def _is_uri(image: str) -> bool:
    return "://" in image or (image.startswith(_LOCAL_SCHEMES) and not os.path.exists(image))


def pull_uri(args: argparse.Namespace) -> None:
    """``docker://`` and friends: the image to run, open
    (:func:`capsa.pulling.open_for_run`): ``args.image`` names it,
    ``args.image_fd`` is it."""
    from capsa.cli.commands.pull import credentials
    from capsa.pulling import PullRequest, open_for_run

    username, password = credentials(args)
    found = open_for_run(PullRequest(
        args.image, disable_cache=args.disable_cache, no_https=args.no_https,
        username=username, password=password, authfile=args.authfile,
        config=args.global_options.config), site=args.site)
    args.image_ref = args.image
    # run what was checked: the entry's descriptor, not its name again
    args.image, args.image_fd = str(found.path), found.fd


def request_from_args(args: argparse.Namespace) -> ContainerRequest:
    """The flags (and the variables standing for them) as a request."""
    from capsa.runtime.request import GPU_VENDORS, ContainerRequest

    return ContainerRequest(
        image=args.image, action=args.command, args=tuple(args.args),
        image_ref=getattr(args, "image_ref", None) or "",
        image_fd=getattr(args, "image_fd", None), bind=tuple(args.bind),
        mount=tuple(args.mount), contain=args.contain, containall=args.containall,
        compat=args.compat, cleanenv=args.cleanenv, env=tuple(args.env),
        env_file=tuple(args.env_file), no_env=tuple(args.no_env), workdir=args.workdir,
        scratch=tuple(args.scratch), no_home=args.no_home, home=args.home,
        no_mount=tuple(args.no_mount), pwd=args.pwd, writable=args.writable,
        writable_tmpfs=args.writable_tmpfs, overlay=tuple(args.overlay),
        fakeroot=args.fakeroot, ignore_subuid=args.ignore_subuid,
        ignore_fakeroot_command=args.ignore_fakeroot_command, pid=args.pid, ipc=args.ipc,
        no_init=args.no_init, hostname=args.hostname, app=args.app, shell=args.shell,
        unsquash=args.unsquash, no_eval=args.no_eval,
        gpus=tuple(v for v in GPU_VENDORS if getattr(args, v)), net=args.net,
        network=args.network, network_args=tuple(args.network_args),
        limits=_resource_limits(args), share_ns=getattr(args, "share_ns", None),
        no_share_ns=getattr(args, "no_share_ns", False),
        sharens=getattr(args, "sharens", False))


def build_spec(args: argparse.Namespace, img: ImageSpec | None = None) -> ContainerSpec:
    """Check the request and turn it into a ContainerSpec (bad input -> errors);
    the image is opened here unless *img* is given."""
    from capsa.runtime.request import Host, container_spec

    return container_spec(request_from_args(args), Host.current(args.site), img)


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
