"""``capsa version``: print the version alone."""

from __future__ import annotations

import argparse

from capsa import __version__

HELP = "Show the version"


def configure(parser: argparse.ArgumentParser) -> None:
    del parser  # no flags


def run(args: argparse.Namespace) -> int:
    del args
    print(__version__)
    return 0
