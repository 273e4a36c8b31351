"""A build, as a caller asks for it: :class:`BuildRequest`, and
:func:`build_request`, which checks it and runs the build.

The request is what ``capsa build``'s flags say (the CLI fills it from argv
and the environment; a Python caller directly).  An unprivileged build runs
as root of a user namespace, entered by this process for the whole build
(:func:`as_fakeroot`): a process can enter one only while it has a single
thread, so from a process with threads the build runs in a child process
of its own (:mod:`capsa.cli.child`, reporting on standard error).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from capsa import report
from capsa.builder.build import ALL_SECTIONS, BuildOptions, build, copy_definition_text
from capsa.builder.sandbox import Ownership
from capsa.builder.scripts import ContainerOptions
from capsa.deffile.model import Definition
from capsa.errors import (
    AlreadyExistsError,
    ContainerError,
    EnvironmentFailure,
    FormatError,
    NotFoundError,
    UsageError,
)
from capsa.site import DEFAULT_SETTINGS, SiteSettings

log = report.getLogger("capsa.builder")

_URI_SCHEMES = ("docker", "oci", "oci-archive", "docker-archive", "oras")
Progress = Callable[[str, int, int], None]


class BuildRequest(NamedTuple):
    """What ``capsa build`` asks for; every field has Apptainer's flag's meaning."""

    dest: str                               # a SIF file, or a directory with *sandbox*
    spec: str                               # a definition file, a URI, a SIF or a sandbox
    sandbox: bool = False
    force: bool = False
    update: bool = False
    notest: bool = False
    sections: tuple[str, ...] = ()          # --section (comma lists allowed); () = all
    build_args: tuple[tuple[str, str], ...] = ()
    build_arg_file: str | None = None
    warn_unused_build_args: bool = False
    fakeroot: bool = False
    ignore_subuid: bool = False
    ignore_fakeroot_command: bool = False
    binds: tuple[str, ...] = ()
    nv: bool = False
    rocm: bool = False
    writable_tmpfs: bool = False
    fix_perms: bool = False
    mksquashfs_args: str = ""
    disable_cache: bool = False
    tmpdir: str | None = None
    arch: str | None = None
    arch_variant: str = ""
    platform: str | None = None
    no_https: bool = False
    username: str | None = None
    password: str | None = None
    authfile: str | None = None
    epoch: int | None = None                # SOURCE_DATE_EPOCH: a reproducible SIF
    config: str | None = None               # a user configuration file (cache trust)


def build_request(request: BuildRequest, *, site: SiteSettings = DEFAULT_SETTINGS,
                  environ: Mapping[str, str] | None = None,
                  progress: Progress | None = None) -> Path:
    """Check *request* and build; where the image was written."""
    dest = Path(request.dest)
    if request.update:
        check_update_target(dest, request.sandbox)
    else:
        check_target(dest, request.force)
    definition = definition_for(request.spec, build_args(request),
                                request.warn_unused_build_args)
    options = build_options(request, site, environ, progress)
    if os.geteuid() != 0 and threading.active_count() > 1:
        return _in_child(request, site)
    options = as_fakeroot(options, request)
    try:
        build(definition, dest, options)
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        raise EnvironmentFailure(f"While performing build: {err.strerror or err}{where}"
                                 ) from err
    finally:
        if options.progress is not None:
            options.progress("end", 0, 0)
    return dest


def _in_child(request: BuildRequest, site: SiteSettings) -> Path:
    from capsa.runtime.child import run_in_program

    status = run_in_program(("build", (request, site)))
    if status != 0:
        raise ContainerError(f"build of {request.dest} failed: exit status {status}")
    return Path(request.dest)


def as_fakeroot(options: BuildOptions, request: BuildRequest) -> BuildOptions:
    """An unprivileged build runs as root of a user namespace, entered here
    for the whole build, as Apptainer implies ``--fakeroot`` for it: with the
    user's subordinate ids where there are some (owners kept for real), else
    root-mapped, with fakeroot(1) keeping the owners in its database.

    The options were computed before (home, credentials: the caller's)."""
    from capsa import userns

    plan = userns.plan_fakeroot(ignore_subuid=request.ignore_subuid,
                                ignore_command=request.ignore_fakeroot_command)
    if plan.idmap is not None:
        try:
            userns.enter(plan.idmap)
            if plan.idmap.wide:
                os.setgroups([])
        except OSError as err:
            raise EnvironmentFailure(f"could not create a user namespace for the build: "
                                     f"{err.strerror}") from err
    current = plan.idmap or userns.current_map()
    if current is None or current.wide:
        return options  # real root, or root over subordinate ids: real owners
    if plan.tool is None:
        log.info("Installing some packages may fail")
        ownership = Ownership("all-root")
    else:
        log.info("The %post section will be run under the fakeroot command")
        ownership = Ownership("fakeroot", plan.tool)
    container = dataclasses.replace(options.container,
                                    ignore_fakeroot_command=plan.tool is None)
    return dataclasses.replace(options, ownership=ownership, container=container)


def check_target(dest: Path, force: bool) -> None:
    """Apptainer's refusal to replace an existing target (cli/build.go);
    the CLI asks on a terminal first (and passes *force* if the user agrees)."""
    if not os.path.lexists(dest):
        parent = dest.absolute().parent
        if not parent.is_dir():
            raise NotFoundError(f"cannot build {dest}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise UsageError(f"cannot write to {parent}: permission denied")
        return
    if dest.is_dir() and not force:
        entries = set(os.listdir(dest))
        if entries and not {".singularity.d", "dev", "proc", "sys"} <= entries:
            raise AlreadyExistsError(
                f"{dest.absolute()} is not empty and is not an Apptainer sandbox, check its "
                "content first and use --force if you want to overwrite it")
    if not force:
        raise AlreadyExistsError(f"build target '{dest.name}' already exists. Use --force "
                                 "if you want to overwrite it")


def check_update_target(dest: Path, sandbox: bool) -> None:
    if not os.path.lexists(dest):
        raise NotFoundError(f"could not update sandbox {dest.absolute()}: doesn't exist")
    if not dest.is_dir() or not sandbox:
        raise UsageError(f"only sandbox update is supported: {dest.absolute()} is not a "
                         "directory" if not dest.is_dir() else
                         "--update needs --sandbox: only sandbox update is supported")


def build_args(request: BuildRequest) -> dict[str, str]:
    """The values for ``{{ K }}`` placeholders: the file's, then the pairs'."""
    from capsa.deffile.parser import parse_assignments

    values: dict[str, str] = {}
    if request.build_arg_file:
        try:
            text = Path(request.build_arg_file).read_text()
        except OSError as err:
            raise NotFoundError(f"while reading --build-arg-file {request.build_arg_file}: "
                                f"{err.strerror}") from err
        values.update(parse_assignments(text))
    values.update(request.build_args)
    return values


def parse_build_arg(item: str) -> tuple[str, str]:
    """``--build-arg K=V``."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--build-arg {item!r}: expected key=value")
    return key, value


def definition_for(spec: str, values: dict[str, str], warn_unused: bool) -> Definition:
    """The definition a build spec amounts to: the parsed file, or a header
    (``Bootstrap: docker``/``localimage``) for a URI or an image."""
    from capsa.deffile.parser import check_buildable, parse

    text = _spec_as_definition(spec)
    if text is None:
        if not os.path.exists(spec):
            raise NotFoundError(f"Unable to build from {spec}: no such file or directory")
        text = copy_definition_text(Path(spec))
    elif values:
        raise UsageError("--build-arg is only meaningful with a definition file")
    try:
        definition = parse(text, values)
        check_buildable(definition)
    except FormatError as err:
        raise FormatError(f"Unable to build from {spec}: {err}") from err
    unused = sorted(set(values) - definition.used_args)
    if unused:
        message = f"unused build args: {', '.join(unused)}"
        if not warn_unused:
            raise UsageError(f"{message} (use --warn-unused-build-args to continue)")
        log.warning("%s", message)
    return definition


def _spec_as_definition(spec: str) -> str | None:
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in _URI_SCHEMES:
        source = rest[2:] if rest.startswith("//") else rest
        return f"Bootstrap: {scheme}\nFrom: {source}\n"
    if sep and scheme in ("library", "shub", "http", "https"):
        raise UsageError(f"unsupported build source {spec}: pull it first, then build from "
                         "the file")
    path = Path(spec)
    if path.is_dir() or (path.is_file() and _is_image(path)):
        return f"Bootstrap: localimage\nFrom: {path.absolute()}\n"
    return None


def _is_image(path: Path) -> bool:
    """A SIF, a squashfs, or a Singularity 2.x image (squashfs or ext3)."""
    from capsa.legacyimage import HEAD_SIZE, detect

    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_SIZE)
    except OSError:
        return False
    return head[32:41] == b"SIF_MAGIC" or detect(head) is not None


def _sections(request: BuildRequest) -> frozenset[str]:
    names = {n.strip().lower() for item in request.sections
             for n in item.split(",") if n.strip()}
    unknown = names - {"all", "none", *ALL_SECTIONS}
    if unknown:
        raise UsageError(f"--section: unknown section(s) {', '.join(sorted(unknown))}")
    return frozenset(names or {"all"})


def build_options(request: BuildRequest, site: SiteSettings,
                  environ: Mapping[str, str] | None, progress: Progress | None
                  ) -> BuildOptions:
    from capsa.pulling import PullOptions, platform_for, user_cache
    from capsa.registry import registry_options
    from capsa.squashfs import SquashfsOptions, options_from_mksquashfs_args
    from capsa.userdirs import scratch

    tmpdir = Path(scratch(environ, request.tmpdir))
    squashfs = (options_from_mksquashfs_args(request.mksquashfs_args)
                if request.mksquashfs_args else SquashfsOptions())
    pull = PullOptions(
        platform=platform_for(request.platform, request.arch, request.arch_variant),
        cache=user_cache(disabled=request.disable_cache, site=site, config=request.config,
                         environ=environ),
        tmpdir=tmpdir, squashfs=squashfs,
        registry=registry_options(no_https=request.no_https, username=request.username,
                                  password=request.password, authfile=request.authfile,
                                  environ=environ),
        epoch=request.epoch, progress=progress)
    container = ContainerOptions(binds=request.binds, nv=request.nv, rocm=request.rocm,
                                 fakeroot=request.fakeroot,
                                 writable_tmpfs=request.writable_tmpfs, site=site)
    return BuildOptions(sandbox=request.sandbox, update=request.update,
                        fix_perms=request.fix_perms, notest=request.notest,
                        sections=_sections(request), container=container, pull=pull,
                        squashfs=squashfs, arch=request.arch or "", tmpdir=tmpdir,
                        epoch=request.epoch, progress=progress)
