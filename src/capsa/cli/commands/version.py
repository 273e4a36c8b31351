"""``capsa version``: print the version alone.

Called as ``apptainer`` or ``singularity``, the Apptainer command-line level
capsa implements (``1.4.5+capsa.1.0.0``); called as ``capsa``, capsa's own.
"""

from __future__ import annotations

import argparse

HELP = "Show the version for Apptainer"


def configure(parser: argparse.ArgumentParser) -> None:
    del parser  # no flags


def run(args: argparse.Namespace) -> int:
    del args
    from capsa import __version__
    from capsa.cli.main import apptainer_version, program_name

    print(__version__ if program_name() == "capsa" else apptainer_version())
    return 0
