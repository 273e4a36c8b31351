"""What the SIF commands (``sif``, ``sign``, ``verify``) share on their
command lines: decimal integer argument types with siftool's messages, and
the ``--group-id``/``--sif-id`` pair that picks the objects to work on."""

from __future__ import annotations

import argparse


def integer(text: str) -> int:
    """A decimal integer argument."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid argument {text!r}: not a number") from None


def _bounded(text: str, low: int, high: int) -> int:
    value = integer(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"invalid argument {text!r}: out of range")
    return value


def uint32(text: str) -> int:
    return _bounded(text, 0, 0xFFFF_FFFF)


def int32(text: str) -> int:
    return _bounded(text, -(1 << 31), (1 << 31) - 1)


def add_object_selection(parser: argparse.ArgumentParser, verb: str) -> None:
    """``-g/--group-id`` and ``-i/--sif-id``, as ``sign`` and ``verify`` take them."""
    parser.add_argument("-g", "--group-id", "--groupid", dest="group_id", type=uint32,
                        default=None, help=f"{verb} objects with the specified group ID")
    parser.add_argument("-i", "--sif-id", "--id", dest="sif_id", type=uint32, default=None,
                        help=f"{verb} object with the specified ID")


def selection(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    """The groups and the objects the two flags name (none: every group)."""
    groups = [args.group_id] if args.group_id is not None else []
    objects = [args.sif_id] if args.sif_id is not None else []
    return groups, objects
