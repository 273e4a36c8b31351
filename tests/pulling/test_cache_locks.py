"""The cache's lock is an ``fcntl`` record lock owned by the open file: it
excludes other processes (and so other hosts of an NFS-shared cache, which
carry record locks, where ``flock`` is only emulated) and other threads."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from capsa.content import ContentCache


def _probe(path: Path) -> bool:
    """In a child process: could it take a POSIX record lock on *path* now?"""
    child = os.fork()
    if child == 0:  # pragma: no cover - the other process
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os._exit(1)
        os._exit(0)
    _pid, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_the_lock_is_a_record_lock(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache")
    cache.ensure()
    lock_file = tmp_path / "cache" / ".locks" / "sif-k"
    with cache.lock("sif-k"):
        assert not _probe(lock_file)  # flock would not stop a record lock
    assert _probe(lock_file)
