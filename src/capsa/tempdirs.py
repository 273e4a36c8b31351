"""Private temporary directories that do not outlive the run that made them.

Pulls, builds and container sessions work in directories of the temporary
directory (``capsa-pull-*``, ``capsa-build-*``, ``capsa-session-*``,
``capsa-sandbox-*``).  The run that makes one removes it on every exit it
sees (errors, SIGINT, and SIGTERM/SIGHUP, which the CLI turns into an
exception); a run killed outright (SIGKILL, a node crash) cannot.  So each
directory is ``flock``-ed by its maker for as long as the run lives (the
lock goes when the last process holding it dies, whatever kills it), and a
later run recognises leftovers by three signs before removing them: the
directory is its user's, older than :data:`STALE_AFTER` seconds, and nobody
holds its lock (:func:`sweep`, also run by ``capsa cache clean``).

Imported on the exec path (the session directory): ``os``, ``fcntl`` and
``stat`` only.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

from capsa.errors import EnvironmentFailure

PREFIXES = ("capsa-pull-", "capsa-build-", "capsa-session-", "capsa-sandbox-")
STALE_AFTER = 60.0  # seconds: no run ever leaves a fresh directory unlocked that long


def make_dir(parent: str, prefix: str) -> tuple[str, int]:
    """A new private directory ``<parent>/<prefix><random>`` and the open,
    locked descriptor that marks it as in use (close it after removal)."""
    for _ in range(100):
        path = f"{parent}/{prefix}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as err:
            raise EnvironmentFailure(f"could not create a temporary directory in {parent}: "
                                     f"{err.strerror}") from None
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else has it
        return path, fd
    raise EnvironmentFailure(f"could not create a temporary directory in {parent}")


def sweep(parent: str, prefixes: tuple[str, ...] = PREFIXES,
          min_age: float = STALE_AFTER) -> list[str]:
    """Remove the directories under *parent* that runs of ours left behind
    (see the module's description); what was removed.  Never raises."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefixes)]
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(parent, name)
        if remove_if_stale(path, min_age):
            removed.append(path)
    return removed


def remove_if_stale(path: str | os.PathLike[str], min_age: float,
                    lock: str | os.PathLike[str] | None = None) -> bool:
    """Remove *path* if it is ours, older than *min_age* seconds and nobody
    holds the lock on it (or on *lock*, another file a live writer of *path*
    holds locked).  Did it go?"""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if info.st_uid != os.geteuid() or time.time() - info.st_mtime < min_age:
        return False
    if stat.S_ISLNK(info.st_mode):
        return False
    held = _try_lock(path if lock is None else lock)
    if held is None:
        return False
    try:
        remove_tree(os.fspath(path))
    finally:
        if held >= 0:
            os.close(held)
    return not os.path.lexists(path)


def _try_lock(path: str | os.PathLike[str]) -> int | None:
    """The lock on *path*, if nobody holds it (-1: there is no such file,
    so nobody can); None while it is held."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_tree(path: str) -> None:
    """Remove *path* (a file or a whole tree, read-only parts included);
    never raises."""
    import shutil

    def fix(func: object, failed: str, exc: object) -> None:
        del func, exc
        parent = os.path.dirname(failed)
        _quietly(os.chmod, parent, stat.S_IRWXU)
        if os.path.isdir(failed) and not os.path.islink(failed):
            _quietly(os.chmod, failed, stat.S_IRWXU)
            shutil.rmtree(failed, ignore_errors=True)
        else:
            _quietly(os.unlink, failed)

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=fix)
    else:
        _quietly(os.unlink, path)


def _quietly(func: object, *args: object) -> None:
    try:
        func(*args)  # type: ignore[operator]
    except OSError:
        return
