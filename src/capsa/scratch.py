"""Where scratch space goes, and what running out of it says.

One rule for every command, Apptainer's (``cmd/internal/cli/fs_linux.go``
and the ``TMPDIR`` flag's environment keys): ``--tmpdir``, else
``APPTAINER_TMPDIR`` (``SINGULARITY_TMPDIR``), else ``TMPDIR``, else
``/tmp`` -- unless ``/tmp`` is a tmpfs (memory, and often a small slice of
it), then ``/var/tmp``.

Running out of space anywhere in a pull or a build is one
:class:`~capsa.errors.NoSpaceError` naming the directory and what to set
instead (:func:`guard`), whichever step hit it: a write of ours (``ENOSPC``,
``EDQUOT``), a tool's (``tar2sqfs``, ``unsquashfs``: their message says so),
or a script (``%post``) that failed while the filesystem was full.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Mapping, Sequence

from capsa.errors import CapsaError, NoSpaceError
from capsa.record import Record

TMP = "/tmp"
VAR_TMP = "/var/tmp"
TMPDIR_VARIABLES = ("APPTAINER_TMPDIR", "SINGULARITY_TMPDIR", "TMPDIR")

# Under this much room left (for the caller), a filesystem counts as full:
# a write that failed for space leaves less than a block or two behind.
FULL_BELOW = 1 << 20
_NO_SPACE_TEXTS = tuple(os.strerror(e).lower() for e in (errno.ENOSPC, errno.EDQUOT))


def scratch_dir(environ: Mapping[str, str], flag: str | None = None, *,
                existing_only: bool = False) -> str:
    """The scratch directory: *flag* (``--tmpdir``), else the first of
    :data:`TMPDIR_VARIABLES` that is set, else ``/tmp``, or ``/var/tmp`` when
    ``/tmp`` is a tmpfs.  *existing_only*: a value naming no directory is
    passed over (the runtime's sessions, which must never fail for it)."""
    for value in (flag, *(environ.get(name) for name in TMPDIR_VARIABLES)):
        if value and (not existing_only or os.path.isdir(value)):
            return value
    return VAR_TMP if _is_tmpfs(TMP) and os.path.isdir(VAR_TMP) else TMP


def _is_tmpfs(path: str) -> bool:
    from capsa import linux

    try:
        return linux.filesystem_type(path) == linux.TMPFS_MAGIC
    except OSError:
        return False


class Place(Record):
    """A directory something is written to, and what the user may set to
    move it (``APPTAINER_TMPDIR``...); no variable for a destination."""

    directory: str
    variable: str = ""

    def message(self) -> str:
        text = f"no space left on device in {self.directory}"
        if self.variable:
            text += f": set {self.variable} to a directory with more space"
        return text


def tmpdir_place(directory: str | os.PathLike[str]) -> Place:
    return Place(os.fspath(directory), "APPTAINER_TMPDIR (or --tmpdir)")


def cache_place(directory: str | os.PathLike[str]) -> Place:
    return Place(os.fspath(directory), "APPTAINER_CACHEDIR")


def says_no_space(err: BaseException) -> bool:
    """Whether *err*, or an error it was raised from, is about space."""
    seen: BaseException | None = err
    for _depth in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, CapsaError) and any(t in str(seen).lower() for t in _NO_SPACE_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def free_space(directory: str | os.PathLike[str]) -> int:
    """Bytes the caller may still write on the filesystem holding
    *directory* (or its nearest existing parent); a huge number if unknown."""
    path = os.path.abspath(directory)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    try:
        info = os.statvfs(path)
    except OSError:
        return 1 << 62
    blocks = info.f_bfree if os.geteuid() == 0 else info.f_bavail
    return blocks * info.f_frsize


def is_full(directory: str | os.PathLike[str]) -> bool:
    """Whether less than :data:`FULL_BELOW` is left where *directory* is."""
    return free_space(directory) < FULL_BELOW


@contextlib.contextmanager
def guard(*places: Place, check_full: bool = False) -> Iterator[None]:
    """Turn running out of space in the block into one :class:`NoSpaceError`
    naming where.  With *check_full*, any failure after one of *places* ran
    full counts too: a script's ``No space left on device`` reaches us only
    as its exit status, and a package manager may free what it wrote before
    it exits, so the places are watched while the block runs (and looked at
    again before the caller cleans up, which frees the space)."""
    watch = _Watch(places) if check_full else None
    try:
        yield
    except NoSpaceError:
        raise
    except (CapsaError, OSError) as err:
        filled = watch.filled() if watch is not None else []
        place = _culprit(err, places, filled)
        if place is None:
            raise
        raise NoSpaceError(place.message()) from err
    finally:
        if watch is not None:
            watch.stop()


class _Watch:
    """Which of *places* ran full at some moment (sampled 20 times a second)."""

    def __init__(self, places: Sequence[Place]) -> None:
        import threading

        self.places = places
        self.seen_full: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.seen_full.update(p.directory for p in self.places if is_full(p.directory))

    def filled(self) -> list[Place]:
        return [p for p in self.places if p.directory in self.seen_full or is_full(p.directory)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _culprit(err: BaseException, places: Sequence[Place], filled: Sequence[Place]
             ) -> Place | None:
    """The place to blame, if *err* is about space or came once one filled up."""
    if filled:
        return filled[0]
    if says_no_space(err) and places:
        full = [p for p in places if is_full(p.directory)]
        return full[0] if full else places[0]
    return None
