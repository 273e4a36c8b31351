"""``capsa push SIF oras://REF``: upload a SIF to an OCI registry as an artifact."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Upload image to the provided URI"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [push options...] <image> oras://<registry>/<name>[:tag]"
    parser.add_argument("image", help="the SIF file to upload")
    parser.add_argument("uri", help="oras://registry/name[:tag]")
    parser.add_argument("--no-https", "--nohttps", dest="no_https", action="store_true",
                        help="use http instead of https for the registry")
    parser.add_argument("--authfile", help="docker-style authentication file to use")
    parser.add_argument("--docker-login", action="store_true",
                        help="login to the registry interactively")
    parser.add_argument("-U", "--allow-unsigned", action="store_true",
                        help="do not require a signed container image (accepted, no effect)")
    parser.add_argument("-D", "--description", default="", help="(library only; ignored)")


def run(args: argparse.Namespace) -> int:
    from capsa.cli import log
    from capsa.cli.commands.pull import registry_options
    from capsa.errors import UsageError
    from capsa.oci.oras import push_oras

    scheme, sep, rest = args.uri.partition("://")
    if not sep or scheme != "oras":
        raise UsageError(f"unsupported transport type: {args.uri} (push supports oras://)")
    push_oras(Path(args.image), rest, registry_options(args))
    log.info("Upload complete")
    return 0
