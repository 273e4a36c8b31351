"""The suite leaves the test users' homes as it found them.

What a home holds (every name in it, its type, owner and mode) is taken when
the session starts, or when the suite creates the user; at the end of the
session it must be the same.  A test that leaves something behind (a cache,
an instance's logs, a root-owned ``~/.config``, after which the benchmarks'
peers such as podman no longer run as that user) fails the session.  In
strict mode (CI, where the suite runs alone) what it left is also removed,
so that the next run starts from a clean home; elsewhere another session
may be using these homes at the same time, and its files are left alone
(and may be what the check reports).

Only root can read and repair these homes; an unprivileged run has no test
users.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

Entry = tuple[str, int, int, int]   # kind, uid, gid, mode
Snapshot = dict[str, Entry]

_WATCHED: dict[Path, Snapshot] = {}


def watch(home: Path) -> None:
    """Remember what *home* holds now (the first time only)."""
    if home not in _WATCHED and home.is_dir():
        _WATCHED[home] = snapshot(home)


def snapshot(home: Path) -> Snapshot:
    found: Snapshot = {}
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            info = os.lstat(path)
            kind = "dir" if stat.S_ISDIR(info.st_mode) else (
                "link" if stat.S_ISLNK(info.st_mode) else "file")
            found[os.path.relpath(path, home)] = (kind, info.st_uid, info.st_gid,
                                                  stat.S_IMODE(info.st_mode))
    return found


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs, one line each."""
    lines = [f"left behind: {name} ({_describe(after[name])})"
             for name in sorted(after.keys() - before.keys())]
    lines += [f"removed: {name}" for name in sorted(before.keys() - after.keys())]
    lines += [f"changed: {name} ({_describe(before[name])} -> {_describe(after[name])})"
              for name in sorted(before.keys() & after.keys()) if before[name] != after[name]]
    return lines


def check(*, repair: bool) -> list[str]:
    """Every change to a watched home; with *repair*, what was added is removed."""
    problems = []
    for home, before in _WATCHED.items():
        after = snapshot(home) if home.is_dir() else {}
        problems += [f"{home}: {line}" for line in changes(before, after)]
        if repair:
            _remove_additions(home, before, after)
    return problems


def _remove_additions(home: Path, before: Snapshot, after: Snapshot) -> None:
    added = sorted(after.keys() - before.keys())
    for name in added:
        if os.path.dirname(name) in added:
            continue  # goes with its directory
        path = home / name
        if after[name][0] == "dir":
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _describe(entry: Entry) -> str:
    kind, uid, gid, mode = entry
    return f"{kind}, {uid}:{gid}, {mode:o}"
