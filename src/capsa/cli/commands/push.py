"""``capsa push SIF oras://REF``: upload a SIF to an OCI registry as an artifact."""

from __future__ import annotations

import argparse
from pathlib import Path

from capsa.cli.registry_flags import add_registry_flags, registry_options

HELP = "Upload image to the provided URI"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [push options...] <image> oras://<registry>/<name>[:tag]"
    parser.add_argument("image", help="the SIF file to upload")
    parser.add_argument("uri", help="oras://registry/name[:tag]")
    add_registry_flags(parser)
    parser.add_argument("-U", "--allow-unsigned", action="store_true",
                        help="do not require a signed container image (accepted, no effect)")
    parser.add_argument("-D", "--description", default="", help="(library only; ignored)")


def run(args: argparse.Namespace) -> int:
    from capsa.cli import log
    from capsa.errors import UsageError
    from capsa.oci.oras import push_oras

    scheme, sep, rest = args.uri.partition("://")
    if not sep or scheme != "oras":
        raise UsageError(f"unsupported transport type: {args.uri} (push supports oras://)")
    push_oras(Path(args.image), rest, registry_options(args))
    log.info("Upload complete")
    return 0
