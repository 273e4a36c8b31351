"""``capsa build [options] DEST SPEC``: a definition file, a URI, a SIF or a
sandbox directory, to a SIF file or (``--sandbox``) a directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

HELP = "Build an Apptainer image"

_URI_SCHEMES = ("docker", "oci", "oci-archive", "docker-archive", "oras")


def configure(parser: argparse.ArgumentParser) -> None:
    from capsa.cli.registry_flags import add_registry_flags

    parser.usage = "%(prog)s [build options...] <image path> <build spec>"
    add = parser.add_argument
    add("dest", metavar="IMAGE_PATH", help="the SIF file or sandbox directory to write")
    add("spec", metavar="BUILD_SPEC",
        help="definition file, docker://..., oci-archive:..., SIF file or sandbox directory")
    add("-s", "--sandbox", action="store_true", help="build a writable sandbox directory")
    add("-F", "--force", action="store_true", default=_env_flag("FORCE"),
        help="overwrite an existing image or sandbox")
    add("-T", "--notest", action="store_true", help="do not run the %%test section")
    add("-f", "--fakeroot", action="store_true", default=_env_flag("FAKEROOT"),
        help="run %%post and %%test as uid 0 in a user namespace (default as a user)")
    add("--ignore-subuid", action="store_true", default=_env_flag("IGNORE_SUBUID"),
        help="ignore /etc/subuid and /etc/subgid: build in a root-mapped namespace")
    add("--ignore-fakeroot-command", action="store_true",
        default=_env_flag("IGNORE_FAKEROOT_COMMAND"),
        help="do not use the host's fakeroot command in a root-mapped namespace")
    add("-u", "--update", action="store_true",
        help="run the definition over an existing sandbox (skips the bootstrap)")
    add("--section", action="append", default=[], metavar="NAME",
        help="only run the given sections (comma lists, repeatable)")
    add("--build-arg", action="append", default=[], metavar="K=V",
        help="a value for {{ K }} in the definition file")
    add("--build-arg-file", metavar="FILE", help="K=V lines for {{ K }} placeholders")
    add("--warn-unused-build-args", action="store_true",
        help="warn instead of failing when a --build-arg is not used")
    add("-B", "--bind", action="append", default=[], metavar="SPEC",
        help="bind a host path into %%post and %%test: src[:dest[:ro|rw]]")
    add("--nv", action="store_true", default=_env_flag("NV"),
        help="bind the NVIDIA driver into %%post and %%test")
    add("--rocm", action="store_true", default=_env_flag("ROCM"),
        help="bind the ROCm driver into %%post and %%test")
    add("--writable-tmpfs", action="store_true", help="a writable overlay for %%test")
    add("--mksquashfs-args", default=_env("MKSQUASHFS_ARGS") or "",
        help="additional options for squashfs creation (-comp gzip...)")
    add("--disable-cache", action="store_true", default=_env_flag("DISABLE_CACHE"),
        help="do not use or create cached images/blobs")
    add("--tmpdir", help="where the build's temporary files go")
    add("--arch", help="architecture to pull and to record in the SIF")
    add("--arch-variant", default="", help="architecture variant")
    add("--platform", help="platform to pull (os/arch[/variant])")
    add_registry_flags(parser)
    add("--fix-perms", action="store_true",
        help="give the owner rwx on directories and rw on files of the base image")
    add("--library", default="", help=argparse.SUPPRESS)
    add("--no-cleanup", action="store_true", help=argparse.SUPPRESS)
    add("--userns", action="store_true", help=argparse.SUPPRESS)


def _env(name: str) -> str | None:
    for prefix in ("APPTAINER_", "SINGULARITY_"):
        value = os.environ.get(prefix + name)
        if value is not None:
            return value
    return None


def _env_flag(name: str) -> bool:
    value = _env(name)
    return value is not None and value.lower() not in ("", "0", "false", "no")


def run(args: argparse.Namespace) -> int:
    from capsa.builder.build import build

    _cleanup_on_sigterm()
    dest = Path(args.dest)
    if args.update:
        check_update_target(dest, args.sandbox)
    else:
        check_target(dest, args.force, args.sandbox)
    definition = definition_for(args.spec, build_args(args), args.warn_unused_build_args)
    options = as_fakeroot(build_options(args), args)
    try:
        build(definition, dest, options)
    except OSError as err:
        from capsa.errors import EnvironmentFailure

        where = f": {err.filename}" if err.filename else ""
        raise EnvironmentFailure(f"While performing build: {err.strerror or err}{where}"
                                 ) from err
    finally:
        if options.progress is not None:
            options.progress("end", 0, 0)
    return 0


def as_fakeroot(options: Any, args: argparse.Namespace) -> Any:
    """An unprivileged build runs as root of a user namespace, entered here
    for the whole build, as Apptainer implies ``--fakeroot`` for it: with the
    user's subordinate ids where there are some (owners kept for real), else
    root-mapped, with fakeroot(1) keeping the owners in its database.

    The options were computed before (home, credentials: the caller's)."""
    import dataclasses

    from capsa import userns
    from capsa.builder.sandbox import Ownership
    from capsa.cli import log
    from capsa.errors import EnvironmentFailure

    plan = userns.plan_fakeroot(ignore_subuid=args.ignore_subuid,
                                ignore_command=args.ignore_fakeroot_command)
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


def _cleanup_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the temporary sandbox is removed;
    a nested container (%post, %test) gets the signal first and a moment to
    clean up after itself, rather than the SIGKILL an unwinding
    subprocess call would send it."""
    import signal

    def stop(signum: int, _frame: object) -> None:
        _stop_children(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def _children() -> list[int]:
    """Our live (not yet reaped, not zombie) child processes, from /proc."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(me) and fields[0] != "Z":
            found.append(int(entry))
    return found


def _stop_children(signum: int, wait: float = 10.0) -> None:
    import contextlib
    import time

    children = _children()
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)
    deadline = time.monotonic() + wait
    while children and time.monotonic() < deadline:
        time.sleep(0.05)
        children = [pid for pid in _children() if pid in children]


def check_target(dest: Path, force: bool, sandbox: bool) -> None:
    """Apptainer's refusal to replace an existing target (cli/build.go)."""
    from capsa.errors import AlreadyExistsError, UsageError

    if not os.path.lexists(dest):
        parent = dest.absolute().parent
        if not parent.is_dir():
            from capsa.errors import NotFoundError

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
    if force:
        return
    if sys.stdin.isatty():
        answer = input(f"Build target '{dest.name}' already exists and will be deleted during "
                       "the build process. Do you want to continue? [y/N] ")
        if answer.strip().lower() == "y":
            return
        raise UsageError("stopping build")
    raise AlreadyExistsError(f"build target '{dest.name}' already exists. Use --force if you "
                             "want to overwrite it")


def check_update_target(dest: Path, sandbox: bool) -> None:
    from capsa.errors import NotFoundError, UsageError

    if not os.path.lexists(dest):
        raise NotFoundError(f"could not update sandbox {dest.absolute()}: doesn't exist")
    if not dest.is_dir() or not sandbox:
        raise UsageError(f"only sandbox update is supported: {dest.absolute()} is not a "
                         "directory" if not dest.is_dir() else
                         "--update needs --sandbox: only sandbox update is supported")


def build_args(args: argparse.Namespace) -> dict[str, str]:
    from capsa.deffile.parser import parse_assignments
    from capsa.errors import NotFoundError, UsageError

    values: dict[str, str] = {}
    if args.build_arg_file:
        try:
            text = Path(args.build_arg_file).read_text()
        except OSError as err:
            raise NotFoundError(f"while reading --build-arg-file {args.build_arg_file}: "
                                f"{err.strerror}") from err
        values.update(parse_assignments(text))
    for item in args.build_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--build-arg {item!r}: expected key=value")
        values[key] = value
    return values


def definition_for(spec: str, values: dict[str, str], warn_unused: bool) -> Any:
    """The definition a build spec amounts to: the parsed file, or a header
    (``Bootstrap: docker``/``localimage``) for a URI or an image."""
    from capsa.cli import log
    from capsa.deffile.parser import check_buildable, parse
    from capsa.errors import FormatError, NotFoundError, UsageError

    text = _spec_as_definition(spec)
    if text is None:
        from capsa.builder.build import copy_definition_text

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
        log.warning(message)
    return definition


def _spec_as_definition(spec: str) -> str | None:
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in _URI_SCHEMES:
        source = rest[2:] if rest.startswith("//") else rest
        return f"Bootstrap: {scheme}\nFrom: {source}\n"
    if sep and scheme in ("library", "shub", "http", "https"):
        from capsa.errors import UsageError

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


def _sections(args: argparse.Namespace) -> frozenset[str]:
    from capsa.builder.build import ALL_SECTIONS
    from capsa.errors import UsageError

    names = {n.strip().lower() for item in args.section for n in item.split(",") if n.strip()}
    unknown = names - {"all", "none", *ALL_SECTIONS}
    if unknown:
        raise UsageError(f"--section: unknown section(s) {', '.join(sorted(unknown))}")
    return frozenset(names or {"all"})


def _verbosity(args: argparse.Namespace) -> list[str]:
    """The global verbosity flag, for the nested ``capsa exec`` too."""
    from capsa.cli import log

    level = getattr(getattr(args, "global_options", None), "level", log.NORMAL)
    flags = {log.DEBUG: "-d", log.VERBOSE: "-v", log.QUIET: "-q", log.SILENT: "-s"}
    return [flags[level]] if level in flags else []


def build_options(args: argparse.Namespace) -> Any:
    from capsa.builder.build import BuildOptions
    from capsa.builder.scripts import ContainerOptions, capsa_module
    from capsa.cli.commands.pull import (
        platform_of,
        source_date_epoch,
        tmpdir_of,
        usable_cache,
    )
    from capsa.cli.progress import progress_for_terminal
    from capsa.cli.registry_flags import registry_options
    from capsa.pull import PullOptions
    from capsa.squashfs import SquashfsOptions, options_from_mksquashfs_args

    tmpdir = tmpdir_of(args)
    cache = usable_cache(disabled=args.disable_cache, site=args.site,
                         config=args.global_options.config)
    squashfs = (options_from_mksquashfs_args(args.mksquashfs_args)
                if args.mksquashfs_args else SquashfsOptions())
    epoch = source_date_epoch()
    progress = progress_for_terminal()
    pull = PullOptions(platform=platform_of(args), cache=cache, tmpdir=tmpdir,
                       squashfs=squashfs, registry=registry_options(args), epoch=epoch,
                       progress=progress)
    container = ContainerOptions(binds=tuple(args.bind), nv=args.nv, rocm=args.rocm,
                                 fakeroot=args.fakeroot, writable_tmpfs=args.writable_tmpfs,
                                 capsa=(sys.executable, "-m", capsa_module(), *_verbosity(args)))
    return BuildOptions(sandbox=args.sandbox, update=args.update, fix_perms=args.fix_perms,
                        notest=args.notest,
                        sections=_sections(args),
                        container=container, pull=pull, squashfs=squashfs,
                        arch=args.arch or "", tmpdir=tmpdir, epoch=epoch,
                        progress=progress)
