"""Running the build's scriptlets.

``%setup`` runs on the host (``/bin/sh -ex``, ``APPTAINER_ROOTFS`` set).
``%post`` and ``%test`` run in a nested container, as Apptainer's build
does: a :class:`~capsa.runtime.request.ContainerRequest` (what ``exec
--writable --cleanenv ...`` or ``test`` would ask for: binds, ``--nv``,
fakeroot), turned into its spec here and run by a child process of its own
(:mod:`capsa.runtime.child`), since the build's process has threads of its
own and a container's start needs a process that has none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from capsa import report
from capsa.builder.sandbox import host_root
from capsa.deffile.model import Script
from capsa.errors import ContainerError
from capsa.proc import DEFAULT_RUNNER, Runner, child_env
from capsa.runtime.child import run_in_child
from capsa.runtime.request import ContainerRequest
from capsa.site import DEFAULT_SETTINGS, SiteSettings

log = report.getLogger("capsa.builder")

POST_SCRIPT = "/.post.script"
BUILD_LABELS = "/.build.labels"
POST_ENVIRONMENT = "/.singularity.d/env/91-environment.sh"

# Runs one container request to its end: its exit status.
RunContainer = Callable[[ContainerRequest, SiteSettings], int]


@dataclass(frozen=True, slots=True)
class ContainerOptions:
    """How the nested container runs: what ``build`` passes on to it."""

    binds: tuple[str, ...] = ()
    nv: bool = False
    rocm: bool = False
    fakeroot: bool = False              # forced when not root
    writable_tmpfs: bool = False        # %test only
    runner: Runner = DEFAULT_RUNNER     # for %setup and the programs the build runs
    fakeroot_state: str | None = None   # fakeroot(1)'s database in a root-mapped build
    ignore_fakeroot_command: bool = False
    site: SiteSettings = DEFAULT_SETTINGS
    run_container: RunContainer = run_in_child

    def request(self, rootfs: Path, action: str, args: tuple[str, ...] = ()
                ) -> ContainerRequest:
        """A request for the sandbox *rootfs* with the build's options."""
        return ContainerRequest(
            image=str(rootfs), action=action, args=args, cleanenv=True, no_home=True,
            fakeroot=self.fakeroot or not host_root(), fakeroot_state=self.fakeroot_state,
            ignore_fakeroot_command=self.ignore_fakeroot_command, bind=self.binds,
            gpus=tuple(v for v, wanted in (("nv", self.nv), ("rocm", self.rocm)) if wanted))


def run_setup(script: Script, rootfs: Path, runner: Runner = DEFAULT_RUNNER) -> None:
    """``%setup`` on the host, in a temporary script file."""
    log.info("Running setup scriptlet")
    with tempfile.NamedTemporaryFile("w", prefix="capsa-setup-", suffix=".sh",
                                     delete=False) as handle:
        handle.write(script.body)
    try:
        env = child_env(APPTAINER_ROOTFS=str(rootfs), SINGULARITY_ROOTFS=str(rootfs))
        done = runner.run(["/bin/sh", "-ex", handle.name], check=False, capture=False, env=env)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise ContainerError(f"While performing build: %setup failed: exit status "
                             f"{done.returncode}")


def _interpreter(args: str) -> list[str]:
    """``%post -c /bin/bash`` -> ``/bin/sh -ex -c "/bin/bash /.post.script"``."""
    words = args.split()
    if len(words) >= 2 and words[0] == "-c":
        return ["/bin/sh", "-ex", "-c", f"{' '.join(words[1:])} {POST_SCRIPT}"]
    return ["/bin/sh", "-ex", POST_SCRIPT]


def post_request(script: Script, rootfs: Path, options: ContainerOptions, *,
                 pwd: str = "/", env: Mapping[str, str] | None = None) -> ContainerRequest:
    """What ``%post`` (or an ``%appinstall``) asks for: the sandbox, writable,
    without the host environment, the host's name resolution."""
    extra = tuple(f"{key}={value}" for key, value in (env or {}).items())
    return options.request(rootfs, "exec", tuple(_interpreter(script.args)))._replace(
        writable=True, pwd=pwd,
        env=(f"APPTAINER_ENVIRONMENT={POST_ENVIRONMENT}", f"APPTAINER_LABELS={BUILD_LABELS}",
             *extra),
        bind=(*options.binds, *_host_network_binds(rootfs)))


def run_post(script: Script, rootfs: Path, options: ContainerOptions, *, pwd: str = "/",
             env: Mapping[str, str] | None = None, what: str = "%post") -> None:
    """``%post`` (or an ``%appinstall``) in the sandbox: see :func:`post_request`."""
    log.info("Running post scriptlet" if what == "%post" else f"Running {what}")
    script_path = rootfs / POST_SCRIPT.lstrip("/")
    script_path.unlink(missing_ok=True)  # never write through a symlink of the image
    script_path.write_text(script.body)
    script_path.chmod(0o755)
    try:
        status = options.run_container(post_request(script, rootfs, options, pwd=pwd, env=env),
                                       options.site)
    finally:
        script_path.unlink(missing_ok=True)
    if status != 0:
        raise ContainerError(f"While performing build: while running {what}: exit status "
                             f"{status}")


def _host_network_binds(rootfs: Path) -> tuple[str, ...]:
    """Host ``/etc/resolv.conf`` and ``/etc/hosts`` over the image's (regular)
    files, so %post can reach the network by name."""
    binds: list[str] = []
    for name in ("etc/resolv.conf", "etc/hosts"):
        inside = rootfs / name
        if os.path.isfile(f"/{name}") and inside.is_file() and not inside.is_symlink():
            binds.append(f"/{name}:/{name}")
    return tuple(binds)


def testscript_request(rootfs: Path, options: ContainerOptions) -> ContainerRequest:
    """What the image's ``%test`` asks for: as ``capsa test`` would run it."""
    return options.request(rootfs, "test")._replace(writable_tmpfs=options.writable_tmpfs)


def run_test(rootfs: Path, options: ContainerOptions) -> None:
    """The image's ``%test`` (:func:`testscript_request`)."""
    log.info("Running testscript")
    status = options.run_container(testscript_request(rootfs, options), options.site)
    if status != 0:
        raise ContainerError(f"While performing build: testscript failed: exit status "
                             f"{status}")
