"""``capsa cache list|clean``: what the pull cache holds, and emptying it."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import datetime
from typing import Any

from capsa import report

HELP = "Manage the local cache"

log = report.getLogger("capsa.cache")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<command>")
    listing = sub.add_parser("list", help="List your local Apptainer cache")
    listing.add_argument("-T", "--type", action="append", default=[],
                         help="a list of cache types to display, possible entries: "
                              "library, oci, shub, blob(s), all (default [all])")
    listing.add_argument("-v", "--verbose", action="store_true",
                         help="include cache entries in the output")
    clean = sub.add_parser("clean", help="Clean your local Apptainer cache")
    clean.add_argument("-T", "--type", action="append", default=[],
                       help="a list of cache types to clean, possible entries: "
                            "library, oci, shub, blob, net, oras, all (default [all])")
    clean.add_argument("-D", "--days", type=int, default=0,
                       help="remove all cache entries older than specified number of days")
    clean.add_argument("-n", "--dry-run", action="store_true",
                       help="operate in dry run mode and do not actually clean the cache")
    clean.add_argument("-f", "--force", action="store_true",
                       help="suppress any prompts and clean the cache")


def _types(requested: list[str]) -> tuple[str, ...]:
    from capsa.content import CACHE_TYPES, TYPE_ALIASES
    from capsa.errors import UsageError

    names = [n.strip() for item in requested for n in item.split(",") if n.strip()]
    if not names or "all" in names:
        return CACHE_TYPES
    kinds = []
    for name in names:
        if name not in TYPE_ALIASES:
            raise UsageError(f"{name} is not a valid cache type")
        kinds.append(TYPE_ALIASES[name])
    return tuple(k for k in CACHE_TYPES if k in kinds)


def find_size(size: int) -> str:
    """Sizes as Apptainer prints them: ``0.17 KiB``, ``35.59 MiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size / 1024:.2f} KiB"


def _cache() -> Any:
    from capsa.content import ContentCache, default_cache_root

    return ContentCache(default_cache_root())


def list_cache(args: argparse.Namespace) -> int:
    kinds = _types(args.type)
    cache = _cache()
    if args.verbose:
        print(f"{'NAME':<24} {'DATE CREATED':<22} {'SIZE':<16} TYPE")
    containers = blobs = 0
    container_space = blob_space = 0
    for kind in kinds:
        entries = cache.entries(kind)
        for entry in entries:
            if args.verbose:
                when = datetime.fromtimestamp(entry.mtime).strftime("%Y-%m-%d %H:%M:%S")
                print(f"{entry.name[:22]:<24} {when:<22} {find_size(entry.size):<16} {kind}")
        space = sum(e.size for e in entries)
        if kind == "blob":
            blobs, blob_space = len(entries), space
        else:
            containers += len(entries)
            container_space += space
    if args.verbose:
        print()
    parts = []
    if any(k != "blob" for k in kinds):
        parts.append(f" {containers} container file(s) using {find_size(container_space)}")
    if "blob" in kinds:
        parts.append(f" {blobs} oci blob file(s) using {find_size(blob_space)}")
    print(f"There are{' and'.join(parts)} of space")
    print(f"Total space used: {find_size(container_space + blob_space)}")
    return 0


def _confirm() -> bool:
    sys.stdout.write(
        "This will delete everything in your cache (containers from all sources and OCI "
        "blobs). \nHint: You can see exactly what would be deleted by canceling and using "
        "the --dry-run option.\nDo you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() == "y"


def clean_cache(args: argparse.Namespace) -> int:
    from capsa.errors import UsageError

    kinds = _types(args.type)
    if args.days < 0:
        raise UsageError("--days must not be negative")
    if args.dry_run:
        print("User requested a dry run. Not actually deleting any data!")
    elif not args.force and not _confirm():
        log.info("Cache cleanup canceled")
        return 0
    cache = _cache()
    now = time.time()
    for kind in kinds:
        _clean_type(cache, kind, args.days, args.dry_run, now)
    if not args.dry_run:
        _clean_scratch(args, cache)
    return 0


def _clean_scratch(args: argparse.Namespace, cache: Any) -> None:
    """What runs of ours that were killed outright left: scratch directories
    in the temporary directory, temporary files in the cache."""
    from capsa import tempdirs
    from capsa.cli.commands.pull import tmpdir_of

    for path in [*tempdirs.sweep(str(tmpdir_of(args))), *cache.sweep_temporaries()]:
        log.info("Removed the leftovers of an interrupted run: %s", path)


def _clean_type(cache: Any, kind: str, days: int, dry_run: bool, now: float) -> None:
    entries = cache.top_entries(kind)
    if not entries:
        log.info("No cached files to remove at %s", cache.dir_for(kind))
        return
    for entry in entries:
        if days > 0 and now - entry.mtime < days * 86400:
            log.debug("Skipping %s: less than %d days old", entry.name, days)
            continue
        log.info("Removing %s cache entry: %s", kind, entry.name)
        if dry_run:
            continue
        if entry.path.is_dir() and not entry.path.is_symlink():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            entry.path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    from capsa.errors import UsageError

    if args.action == "list":
        return list_cache(args)
    if args.action == "clean":
        return clean_cache(args)
    raise UsageError("cache needs a command: list or clean")
