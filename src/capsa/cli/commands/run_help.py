"""``capsa run-help``: print the image's runscript help (``%help``)."""

from __future__ import annotations

import argparse
import sys

HELP = "Show the user-defined help for an image"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", metavar="NAME", default="", help="show the help of an app")
    parser.add_argument("image", help="SIF file or sandbox directory")


def run(args: argparse.Namespace) -> int:
    from capsa.runtime import image
    from capsa.runtime.metadata import read_metadata

    files = read_metadata(image.resolve(args.image), mount=args.site.fuse)
    prefix = f"/scif/apps/{args.app}/scif" if args.app else "/.singularity.d"
    text = files.get(f"{prefix}/runscript.help")
    if text is None:
        sys.stdout.write("No help sections were defined for this image\n")
        return 0
    sys.stdout.write(text.decode("utf-8", errors="replace").rstrip("\n") + "\n")
    return 0
