"""``capsa pull [OUT] URI``: an image from a registry or archive, to one SIF."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from capsa.cli.registry_flags import add_registry_flags, explicit_credentials

if TYPE_CHECKING:
    from capsa.pulling import PullRequest

HELP = "Pull an image from a URI"

_USAGE_URIS = "docker://, oci:, oci-archive:, docker-archive:, oras://"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [pull options...] [output file] <URI>"
    parser.description = f"Pull an image from a URI ({_USAGE_URIS}) into a SIF file."
    parser.add_argument("paths", nargs="+", metavar="[output file] URI")
    parser.add_argument("--name", help="specify a custom image name")
    parser.add_argument("--dir", help="download images to the specific directory")
    parser.add_argument("-F", "--force", action="store_true",
                        help="overwrite an image file if it exists")
    parser.add_argument("--disable-cache", action="store_true",
                        help="do not use or create cached images/blobs")
    parser.add_argument("--arch", help="architecture to pull from the registry")
    parser.add_argument("--arch-variant", default="", help="architecture variant")
    parser.add_argument("--platform", help="platform to pull (os/arch[/variant])")
    add_registry_flags(parser)
    parser.add_argument("--tmpdir", help="specify a temporary directory to use for build")
    parser.add_argument("--mksquashfs-args", default="",
                        help="additional options for squashfs creation (-comp gzip...)")
    parser.add_argument("-U", "--allow-unsigned", action="store_true",
                        help="do not require a signed container image (accepted, no effect)")
    parser.add_argument("--library", default="", help="(accepted, no effect)")


def request_from_args(args: argparse.Namespace) -> PullRequest:
    """The flags (and the variables standing for them) as a request."""
    from capsa.errors import UsageError
    from capsa.pulling import PullRequest

    if len(args.paths) > 2:
        raise UsageError("too many arguments: pull [output file] <URI>")
    username, password = credentials(args)
    return PullRequest(
        uri=args.paths[-1], dest=args.paths[0] if len(args.paths) == 2 else args.name,
        directory=args.dir, force=args.force, disable_cache=args.disable_cache,
        tmpdir=args.tmpdir, platform=args.platform, arch=args.arch,
        arch_variant=args.arch_variant, no_https=args.no_https, username=username,
        password=password, authfile=args.authfile, mksquashfs_args=args.mksquashfs_args,
        epoch=source_date_epoch(), config=args.global_options.config)


def credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """--docker-username/--docker-password (or their variables), or asked
    for on the terminal with --docker-login."""
    found = explicit_credentials(args)
    if found is None:
        return getattr(args, "docker_username", None), getattr(args, "docker_password", None)
    return found.username, found.password


def tmpdir_of(args: argparse.Namespace) -> Path:
    """--tmpdir, else the environment's (:func:`capsa.scratch.scratch_dir`)."""
    from capsa.userdirs import scratch

    return Path(scratch(flag=getattr(args, "tmpdir", None)))  # exec has no --tmpdir flag


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` (seconds since 1970, UTC) when set: Apptainer
    1.5's switch for reproducible images (reproducible-builds.org)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.isdigit() or not value.isascii():
        from capsa.errors import UsageError

        raise UsageError(f"could not parse SOURCE_DATE_EPOCH {value!r}: expected a number "
                         "of seconds since 1970-01-01 UTC")
    return int(value)


def run(args: argparse.Namespace) -> int:
    from capsa import api
    from capsa.cli.progress import progress_for_terminal

    request = request_from_args(args)
    progress = progress_for_terminal()
    try:
        api.pull(request, site=args.site, progress=progress)
    finally:
        if progress is not None:
            progress.finish()
    return 0
