"""Running the build's scriptlets.

``%setup`` runs on the host (``/bin/sh -ex``, ``APPTAINER_ROOTFS`` set).
``%post`` and ``%test`` run in a nested container, as Apptainer's build
does: capsa's own CLI (``python -m capsa exec --writable --cleanenv ...``)
in a subprocess, so that the build never imports the runtime and gets
exactly the container a user would (binds, ``--nv``, fakeroot).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from capsa import report
from capsa.builder.sandbox import host_root
from capsa.deffile.model import Script
from capsa.errors import ContainerError
from capsa.proc import DEFAULT_RUNNER, Runner

log = report.getLogger("capsa.builder")

POST_SCRIPT = "/.post.script"
BUILD_LABELS = "/.build.labels"
POST_ENVIRONMENT = "/.singularity.d/env/91-environment.sh"


@dataclass(frozen=True, slots=True)
class ContainerOptions:
    """How the nested container runs: the flags ``build`` passes on."""

    binds: tuple[str, ...] = ()
    nv: bool = False
    rocm: bool = False
    fakeroot: bool = False              # forced when not root
    writable_tmpfs: bool = False        # %test only
    capsa: tuple[str, ...] = field(
        default_factory=lambda: (sys.executable, "-m", capsa_module()))
    runner: Runner = DEFAULT_RUNNER
    fakeroot_state: str | None = None   # fakeroot(1)'s database in a root-mapped build
    ignore_fakeroot_command: bool = False

    def common_flags(self) -> list[str]:
        flags = ["--cleanenv", "--no-home"]
        if self.fakeroot or not host_root():
            flags.append("--fakeroot")
        if self.ignore_fakeroot_command:
            flags.append("--ignore-fakeroot-command")
        elif self.fakeroot_state:
            flags += ["--fakeroot-state", self.fakeroot_state]
        for spec in self.binds:
            flags += ["--bind", spec]
        if self.nv:
            flags.append("--nv")
        if self.rocm:
            flags.append("--rocm")
        return flags


def capsa_module() -> str:
    """The module to run the nested capsa as: ``capsa``, or the program this
    capsa runs as if that is another entry point to capsa's CLI (the one the
    tests give their site settings through), so that both see the same site."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    cli = getattr(getattr(main, "main", None), "__module__", "")
    if spec is None or cli != "capsa.cli.main":
        return "capsa"
    return str(spec.name)


def run_setup(script: Script, rootfs: Path, runner: Runner = DEFAULT_RUNNER) -> None:
    """``%setup`` on the host, in a temporary script file."""
    log.info("Running setup scriptlet")
    with tempfile.NamedTemporaryFile("w", prefix="capsa-setup-", suffix=".sh",
                                     delete=False) as handle:
        handle.write(script.body)
    try:
        env = dict(os.environ, APPTAINER_ROOTFS=str(rootfs), SINGULARITY_ROOTFS=str(rootfs))
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


def run_post(script: Script, rootfs: Path, options: ContainerOptions, *, pwd: str = "/",
             env: Mapping[str, str] | None = None, what: str = "%post") -> None:
    """``%post`` (or an ``%appinstall``) in the sandbox, writable, without
    the host environment."""
    log.info("Running post scriptlet" if what == "%post" else f"Running {what}")
    script_path = rootfs / POST_SCRIPT.lstrip("/")
    script_path.unlink(missing_ok=True)  # never write through a symlink of the image
    script_path.write_text(script.body)
    script_path.chmod(0o755)
    extra = [f"--env={key}={value}" for key, value in (env or {}).items()]
    argv = [*options.capsa, "exec", "--writable", "--pwd", pwd, *options.common_flags(),
            "--env", f"APPTAINER_ENVIRONMENT={POST_ENVIRONMENT}",
            "--env", f"APPTAINER_LABELS={BUILD_LABELS}", *extra,
            *_host_network_binds(rootfs), str(rootfs), *_interpreter(script.args)]
    try:
        done = options.runner.run(argv, check=False, capture=False)
    finally:
        script_path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise ContainerError(f"While performing build: while running {what}: exit status "
                             f"{done.returncode}")


def _host_network_binds(rootfs: Path) -> Sequence[str]:
    """Host ``/etc/resolv.conf`` and ``/etc/hosts`` over the image's (regular)
    files, so %post can reach the network by name."""
    flags: list[str] = []
    for name in ("etc/resolv.conf", "etc/hosts"):
        inside = rootfs / name
        if os.path.isfile(f"/{name}") and inside.is_file() and not inside.is_symlink():
            flags += ["--bind", f"/{name}:/{name}"]
    return flags


def run_test(rootfs: Path, options: ContainerOptions) -> None:
    """The image's ``%test``, read-only, as ``capsa test`` would run it."""
    log.info("Running testscript")
    argv = [*options.capsa, "test", *options.common_flags()]
    if options.writable_tmpfs:
        argv.append("--writable-tmpfs")
    done = options.runner.run([*argv, str(rootfs)], check=False, capture=False)
    if done.returncode != 0:
        raise ContainerError(f"While performing build: testscript failed: exit status "
                             f"{done.returncode}")
