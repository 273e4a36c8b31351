"""``capsa build [options] DEST SPEC``: a definition file, a URI, a SIF or a
sandbox directory, to a SIF file or (``--sandbox``) a directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from capsa.builder.request import BuildRequest

HELP = "Build an Apptainer image"



def configure(parser: argparse.ArgumentParser) -> None:
    from capsa.cli.registry_flags import add_registry_flags

    parser.usage = "%(prog)s [build options...] <image path> <build spec>"
    add = parser.add_argument
    add("dest", metavar="IMAGE_PATH", help="the SIF file or sandbox directory to write")
    add("spec", metavar="BUILD_SPEC",
        help="definition file, docker://..., oci-archive:..., SIF file or sandbox directory")
    add("-s", "--sandbox", action="store_true", help="build a writable sandbox directory")
    add("-F", "--force", action="store_true",
        help="overwrite an existing image or sandbox")
    add("-T", "--notest", action="store_true", help="do not run the %%test section")
    add("-f", "--fakeroot", action="store_true",
        help="run %%post and %%test as uid 0 in a user namespace (default as a user)")
    add("--ignore-subuid", action="store_true",
        help="ignore /etc/subuid and /etc/subgid: build in a root-mapped namespace")
    add("--ignore-fakeroot-command", action="store_true",
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
    add("--nv", action="store_true",
        help="bind the NVIDIA driver into %%post and %%test")
    add("--rocm", action="store_true",
        help="bind the ROCm driver into %%post and %%test")
    add("--writable-tmpfs", action="store_true", help="a writable overlay for %%test")
    add("--mksquashfs-args", default="",
        help="additional options for squashfs creation (-comp gzip...)")
    add("--disable-cache", action="store_true",
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


def run(args: argparse.Namespace) -> int:
    from capsa import api
    from capsa.cli.progress import progress_for_terminal

    request = request_from_args(args)
    if not request.update and not request.force and _asks_to_replace(Path(request.dest)):
        request = request._replace(force=True)
    api.build(request, site=args.site, progress=progress_for_terminal())
    return 0


def request_from_args(args: argparse.Namespace) -> BuildRequest:
    """The flags (and the variables standing for them) as a request."""
    from capsa.builder.request import BuildRequest, parse_build_arg
    from capsa.cli.commands.pull import credentials, source_date_epoch

    username, password = credentials(args)
    return BuildRequest(
        dest=args.dest, spec=args.spec, sandbox=args.sandbox, force=args.force,
        update=args.update, notest=args.notest, sections=tuple(args.section),
        build_args=tuple(parse_build_arg(item) for item in args.build_arg),
        build_arg_file=args.build_arg_file,
        warn_unused_build_args=args.warn_unused_build_args, fakeroot=args.fakeroot,
        ignore_subuid=args.ignore_subuid,
        ignore_fakeroot_command=args.ignore_fakeroot_command, binds=tuple(args.bind),
        nv=args.nv, rocm=args.rocm, writable_tmpfs=args.writable_tmpfs,
        fix_perms=args.fix_perms, mksquashfs_args=args.mksquashfs_args,
        disable_cache=args.disable_cache, tmpdir=args.tmpdir, arch=args.arch,
        arch_variant=args.arch_variant, platform=args.platform, no_https=args.no_https,
        username=username, password=password, authfile=args.authfile,
        epoch=source_date_epoch(), config=args.global_options.config)


def _asks_to_replace(dest: Path) -> bool:
    """On a terminal, Apptainer asks before replacing a build target; yes?"""
    if not os.path.lexists(dest) or not sys.stdin.isatty():
        return False
    if dest.is_dir() and set(os.listdir(dest)) and not (
            {".singularity.d", "dev", "proc", "sys"} <= set(os.listdir(dest))):
        return False  # not a sandbox: refused whatever the answer (see check_target)
    answer = input(f"Build target '{dest.name}' already exists and will be deleted during "
                   "the build process. Do you want to continue? [y/N] ")
    if answer.strip().lower() == "y":
        return True
    from capsa.errors import UsageError

    raise UsageError("stopping build")
