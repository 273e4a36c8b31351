"""The shared cache: blobs by digest, converted SIFs by image and platform.

Layout (as Apptainer's, under ``$APPTAINER_CACHEDIR/cache``, default
``~/.apptainer/cache``, mode 0700)::

    blob/oci-layout, blob/blobs/sha256/<hex>   verified blobs
    oci-tmp/<key>                              SIFs; key = sha256(hex + arch + variant)
    .locks/<kind>-<hex>                        fcntl lock files (never trusted)

Clusters share caches, so every entry is written to a temporary name in the
same directory and renamed into place only once complete and verified, under
an exclusive ``fcntl`` lock for its key: N processes asking for one blob download
it once, the others wait and reuse it.  A process killed at any moment leaves
at most a ``.tmp-*`` file (locked while it is written), which nothing trusts
and the next writer or ``cache clean`` removes.  Entries are checked again on
reuse (size at once, digest while they are read), and
:meth:`ContentCache.evict` drops one found corrupt.

A cache shared by a group is written by several users, and a recorded digest
proves nothing about a file someone else could have planted.  So an entry, a
lock file or a directory of the cache is used only if it belongs to a user
this process trusts (:class:`Trust`: itself, root, the owner of the directory
the cache lives in, and the users and groups the site's or the user's
configuration names), and is what it should be (a regular file, a real
directory; lock files are opened with ``O_NOFOLLOW``).  Anything else at an
entry's name is reported, cleared away where the directory allows it, and
otherwise worked around (:class:`CacheBlocked`: the caller then converts
privately), never a permanent failure.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import grp
import hashlib
import os
import pwd
import shutil
import stat
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from capsa import report
from capsa.digest import Descriptor, digest_hex, validate_digest
from capsa.errors import EnvironmentFailure
from capsa.tempdirs import STALE_AFTER, remove_if_stale

log = report.getLogger("capsa.content")

# Apptainer's cache types, in its order; each is a directory of the cache.
CACHE_TYPES = ("blob", "library", "oci-tmp", "shub", "oras", "net")
# What users may type after -T for each.
TYPE_ALIASES = {"blob": "blob", "blobs": "blob", "library": "library", "oci": "oci-tmp",
                "oci-tmp": "oci-tmp", "shub": "shub", "oras": "oras", "net": "net"}
_TMP_PREFIX = ".tmp-"
_ENTRY_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LAYOUT = ("blob", "blob/blobs", "blob/blobs/sha256", "oci-tmp", "oras", ".locks")


class CacheBlocked(EnvironmentFailure):
    """An entry's name is taken by something this user neither trusts nor
    can clear away: the caller works without the cache for this image."""


@dataclass(frozen=True, slots=True)
class Trust:
    """Whose files in the cache this process uses: these users, and the
    members of these groups."""

    uids: frozenset[int]
    gids: frozenset[int] = frozenset()

    def trusts(self, uid: int) -> bool:
        return uid in self.uids or (bool(self.gids) and not self.gids.isdisjoint(
            _groups_of(uid)))


def trust_for(root: Path, users: Iterable[str] = (), groups: Iterable[str] = ()) -> Trust:
    """Trust for the cache at *root*: this user, root, the owner of the
    directory the cache lives in (the site's, for a shared cache), and the
    named *users* and *groups* (names or numbers; unknown ones are ignored
    with a warning)."""
    uids = {os.geteuid(), 0}
    with contextlib.suppress(OSError):
        uids.add(os.stat(root.parent).st_uid)
    gids = set()
    for name in users:
        uid = _lookup(name, lambda n: pwd.getpwnam(n).pw_uid, "user")
        if uid is not None:
            uids.add(uid)
    for name in groups:
        gid = _lookup(name, lambda n: grp.getgrnam(n).gr_gid, "group")
        if gid is not None:
            gids.add(gid)
    return Trust(frozenset(uids), frozenset(gids))


def _lookup(name: str, find: Callable[[str], int], kind: str) -> int | None:
    if name.isdigit():
        return int(name)
    try:
        return find(name)
    except KeyError:
        log.warning("cache trust: unknown %s %r ignored", kind, name)
        return None


@functools.cache
def _groups_of(uid: int) -> frozenset[int]:
    """The groups of the user *uid* (primary and supplementary)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return frozenset()
    found = {entry.pw_gid}
    found.update(g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem)
    return frozenset(found)


def default_cache_root(env: Mapping[str, str] | None = None) -> Path:
    """The caller's cache (:func:`capsa.userdirs.cache_root`)."""
    from capsa.userdirs import cache_root

    return Path(cache_root(env))


def sif_cache_key(manifest_digest: str, arch: str, variant: str = "") -> str:
    """Apptainer's key for a converted image: sha256(hex digest + arch + variant)."""
    text = digest_hex(manifest_digest) + arch + variant
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached file, for ``cache list`` and ``cache clean``."""

    kind: str
    name: str
    path: Path
    size: int
    mtime: float


class ContentCache:
    """The cache directory; creates it (0700) on first use.  *trust* says
    whose entries it uses (default: :func:`trust_for` the directory)."""

    def __init__(self, root: Path, trust: Trust | None = None) -> None:
        self.root = root
        self.trust = trust if trust is not None else trust_for(root)

    # -- layout -------------------------------------------------------------
    def dir_for(self, kind: str) -> Path:
        return self.root / kind

    def blob_path(self, digest: str) -> Path:
        validate_digest(digest)
        algo, hexpart = digest.split(":", 1)
        return self.root / "blob" / "blobs" / algo / hexpart

    def sif_path(self, key: str) -> Path:
        return self.root / "oci-tmp" / key

    def ensure(self) -> None:
        """Create the cache (0700) or fail with a clear message; an
        EnvironmentFailure too if a directory of it is not a trusted one."""
        try:
            self._create_root()
            mode = stat.S_IMODE(os.stat(self.root).st_mode)
            for sub in _LAYOUT:
                _make_dir(self.root / sub, mode)
            self._check_directories()
            layout = self.root / "blob" / "oci-layout"
            if not layout.exists():
                _write_atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')
        except OSError as err:
            raise EnvironmentFailure(
                f"cache location {self.root} is not writable: {err.strerror}") from err

    def _create_root(self) -> None:
        """The cache directory, private (0700) when we are the ones creating it."""
        try:
            self.root.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            return  # there already, or another process just made it
        os.chmod(self.root, 0o700)  # mkdir's mode went through the umask

    def _check_directories(self) -> None:
        """Every directory of the layout is a real one, of a trusted user:
        whoever owns a directory can swap its entries at will."""
        for path in (self.root, *(self.root / sub for sub in _LAYOUT)):
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode):
                raise EnvironmentFailure(f"cache location {path} is not a directory")
            if not self.trust.trusts(info.st_uid):
                raise EnvironmentFailure(f"cache location {path} belongs to uid "
                                         f"{info.st_uid}, whom this user does not trust")

    # -- locking ------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock shared by every process (and thread) using this
        cache, on this host or another one sharing it over NFS.

        Without a usable lock file (one planted by another user, a symbolic
        link, a directory) it is reported and the work goes on unlocked:
        every entry is still written atomically, so at worst two processes
        convert the same image at once."""
        fd = self._open_lock(self.root / ".locks" / name)
        if fd is None:
            yield
            return
        try:
            _lock_exclusive(fd)
            yield
        finally:
            os.close(fd)

    def _open_lock(self, path: Path) -> int | None:
        # Read-write where we may (a record lock needs it, and NFS carries only
        # those), else read-only (a lock file another trusted user of a shared
        # cache made: flock, this host).  O_NOFOLLOW: a planted link must not
        # make us create a file where it points.
        fd, problem = self._try_lock_file(path)
        if problem is None:
            return fd
        if self._clear(path):
            fd, again = self._try_lock_file(path)
            if again is None:
                log.warning("replaced lock file %s: %s", path, problem)
                return fd
        log.warning("not using lock file %s: %s", path, problem)
        return None

    def _try_lock_file(self, path: Path) -> tuple[int, str | None]:
        """(descriptor, None) for a usable lock file, else (-1, why not).
        An existing file is opened without O_CREAT, which a sticky directory
        with fs.protected_regular would refuse for another user's file."""
        try:
            try:
                fd = _open_or_create(path, _LOCK_FLAGS)
            except PermissionError:
                fd = _open_or_create(path)
        except OSError as err:
            return -1, _why(err)
        problem = self._untrusted(path, os.fstat(fd))
        if problem is not None:
            os.close(fd)
            return -1, problem
        return fd, None

    def _untrusted(self, path: Path, info: os.stat_result) -> str | None:
        """Why the cache file *path* (with *info*) must not be used, or None."""
        if not stat.S_ISREG(info.st_mode):
            return "it is not a regular file"
        if not self.trust.trusts(info.st_uid):
            return f"it belongs to uid {info.st_uid}, whom this user does not trust"
        return None

    def _clear(self, path: Path) -> bool:
        """Take what is at *path* out of the way (remove it, or rename it
        aside when it is a directory we cannot empty); did it go?"""
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                try:
                    path.rmdir()
                except OSError:
                    path.rename(path.with_name(f".{path.name}.untrusted-{os.urandom(4).hex()}"))
            else:
                path.unlink()
        return not os.path.lexists(path)

    def open_entry(self, path: Path) -> int | None:
        """The cache file *path* open for reading, if it is a regular file of
        a trusted user; None when there is none.  Anything else there is
        reported and cleared away, or :class:`CacheBlocked` if it cannot be."""
        try:
            fd = os.open(path, _ENTRY_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as err:
            problem = _why(err)
        else:
            refusal = self._untrusted(path, os.fstat(fd))
            if refusal is None:
                return fd
            os.close(fd)
            problem = refusal
        self._refuse(path, problem)
        return None

    def _refuse(self, path: Path, problem: str) -> None:
        log.warning("not using cache entry %s: %s", path, problem)
        if not self._clear(path):
            raise CacheBlocked(f"cache entry {path} cannot be replaced ({problem})")

    # -- blobs --------------------------------------------------------------
    def has_blob(self, desc: Descriptor) -> bool:
        """A complete blob of the right size, from a trusted user (its digest
        is checked when read); an untrusted one is cleared away."""
        path = self.blob_path(desc.digest)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        problem = self._untrusted(path, info)
        if problem is not None:
            self._refuse(path, problem)
            return False
        return info.st_size == desc.size

    def get_blob(self, desc: Descriptor, fetch: Callable[[Descriptor, BinaryIO], object]) -> Path:
        """The path of *desc*'s blob, calling ``fetch(desc, file)`` to fill it if
        missing.  *fetch* must verify digest and size while writing (the
        registry client does); other processes wait for the same blob."""
        path = self.blob_path(desc.digest)
        if self.has_blob(desc):
            return path
        with self.lock(f"blob-{digest_hex(desc.digest)}"):
            if self.has_blob(desc):
                return path
            with atomic_file(path) as out:
                fetch(desc, out)
        return path

    def put_blob(self, desc: Descriptor, data: bytes) -> Path:
        return self.get_blob(desc, lambda _d, out: out.write(data))

    def evict(self, path: Path, why: str = "corrupt") -> None:
        """Drop an entry found corrupt (or, *why*, otherwise unusable);
        :class:`CacheBlocked` if it cannot be."""
        log.warning("removing %s cache entry %s", why, path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as err:
            raise CacheBlocked(f"cache entry {path} cannot be replaced: {err.strerror}") \
                from None

    # -- listing and cleaning -------------------------------------------------
    def entries(self, kind: str) -> list[Entry]:
        """What ``cache list`` counts: blobs by digest, files of other types."""
        base = self.dir_for(kind)
        if kind == "blob":
            base = base / "blobs" / "sha256"
        return list(_listing(kind, base))

    def top_entries(self, kind: str) -> list[Entry]:
        """What ``cache clean`` removes: the top level of the type's directory."""
        return list(_listing(kind, self.dir_for(kind), temporaries=True))

    def sweep_temporaries(self, min_age: float = STALE_AFTER) -> list[Path]:
        """Remove the temporary files a killed writer of ours left: older than
        *min_age* seconds and no longer locked by a live writer (blobs lock
        their own temporary file; SIFs are written under their entry's lock).
        What was removed."""
        removed = []
        for kind in ("blob/blobs/sha256", "oci-tmp", "oras"):
            directory = self.root / kind
            try:
                names = [n for n in os.listdir(directory) if n.startswith(".")]
            except OSError:
                continue
            for name in names:
                path = directory / name
                if name.startswith(_TMP_PREFIX):
                    guard = path  # the writer locks its temporary file
                elif name.endswith(".tmp") and name.count(".") >= 3:  # .<key>.<x>.tmp
                    guard = self.root / ".locks" / f"sif-{name.split('.')[1]}"
                else:
                    continue
                if remove_if_stale(path, min_age, guard):
                    removed.append(path)
        return removed


# struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid}:
# a write lock of the whole file.
_WHOLE_FILE = struct.pack("@hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)


def _lock_exclusive(fd: int) -> None:
    """An ``fcntl`` record lock on the whole file open at *fd*, owned by
    that open file (threads exclude each other, as with ``flock``): NFS
    carries record locks between hosts, where ``flock`` is only emulated and
    needs write access.  ``flock`` where the file is read-only to us (this
    host only) or the kernel predates such locks."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _WHOLE_FILE)
    except OSError as err:
        if err.errno not in (errno.EBADF, errno.EINVAL):
            raise
        fcntl.flock(fd, fcntl.LOCK_EX)


def _listing(kind: str, base: Path, temporaries: bool = False) -> Iterator[Entry]:
    try:
        names = sorted(os.listdir(base))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if name.startswith(_TMP_PREFIX) and not temporaries:
            continue
        path = base / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        yield Entry(kind, name, path, st.st_size, st.st_mtime)


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file that appears at *path* complete, or not at all.  The temporary
    file is locked while it is written: a sweep tells a dead writer's apart."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fchmod(out.fileno(), mode & ~_umask())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def copy_atomic(source: Path | int, dest: Path, mode: int = 0o755) -> None:
    """Copy *source* (a path, or a file open as that descriptor, read from
    its start and left open) to *dest* through a temporary file and a rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, int):
        opened = os.fdopen(os.dup(source), "rb")
        opened.seek(0)
    else:
        opened = source.open("rb")
    with atomic_file(dest, mode) as out, opened as src:
        try:
            if not _copy_range(src, out):
                shutil.copyfileobj(src, out, 1 << 20)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise EnvironmentFailure(f"no space left on device writing {dest}") from err
            raise


def _copy_range(src: BinaryIO, out: BinaryIO) -> bool:
    """Kernel-side copy (reflink where the filesystem can); False if unsupported."""
    size = os.fstat(src.fileno()).st_size
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src.fileno(), out.fileno(), size - done)
            if n == 0:
                break
            done += n
    except OSError as err:
        if err.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) and done == 0:
            return False
        raise
    return done == size


def _open_or_create(path: Path, flags: int = _ENTRY_FLAGS) -> int:
    for _ in range(3):
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            pass
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # another process made it meanwhile: open theirs
    return os.open(path, flags)


def _why(err: OSError) -> str:
    """Why a cache file could not be opened, in words."""
    if err.errno == errno.ELOOP:
        return "it is a symbolic link"
    if err.errno == errno.EISDIR:
        return "it is not a regular file"
    return os.strerror(err.errno).lower() if err.errno else str(err)


def _make_dir(path: Path, mode: int) -> None:
    """A directory of the cache, with the cache root's mode: private for a
    private cache, group-writable (and setgid) for a group's."""
    try:
        path.mkdir()
    except FileExistsError:
        return
    os.chmod(path, mode)


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as out:
        out.write(data)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
