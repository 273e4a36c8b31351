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
at most a ``.tmp-*`` file, which nothing trusts and ``cache clean`` removes.
Entries are checked again on reuse (size at once, digest while they are read),
and :meth:`ContentCache.evict` drops one found corrupt.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from capsa import report
from capsa.digest import Descriptor, digest_hex, validate_digest
from capsa.errors import EnvironmentFailure

log = report.getLogger("capsa.content")

# Apptainer's cache types, in its order; each is a directory of the cache.
CACHE_TYPES = ("blob", "library", "oci-tmp", "shub", "oras", "net")
# What users may type after -T for each.
TYPE_ALIASES = {"blob": "blob", "blobs": "blob", "library": "library", "oci": "oci-tmp",
                "oci-tmp": "oci-tmp", "shub": "shub", "oras": "oras", "net": "net"}
_TMP_PREFIX = ".tmp-"


def default_cache_root(env: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """``$APPTAINER_CACHEDIR/cache`` (or ``SINGULARITY_CACHEDIR``), else
    ``~/.apptainer/cache``."""
    env = os.environ if env is None else env
    parent = env.get("APPTAINER_CACHEDIR") or env.get("SINGULARITY_CACHEDIR")
    if parent:
        return Path(parent) / "cache"
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".apptainer" / "cache"


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
    """The cache directory; creates it (0700) on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

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
        """Create the cache (0700) or fail with a clear message."""
        try:
            self._create_root()
            for sub in ("blob/blobs/sha256", "oci-tmp", ".locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
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

    # -- locking ------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock shared by every process (and thread) using this
        cache, on this host or another one sharing it over NFS."""
        path = self.root / ".locks" / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:  # another user's, in a shared cache
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _lock_exclusive(fd)
            yield
        finally:
            os.close(fd)

    # -- blobs --------------------------------------------------------------
    def has_blob(self, desc: Descriptor) -> bool:
        """A complete blob of the right size (its digest is checked when read)."""
        try:
            return self.blob_path(desc.digest).stat().st_size == desc.size
        except FileNotFoundError:
            return False

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

    def evict(self, path: Path) -> None:
        """Drop an entry found corrupt."""
        log.warning("removing corrupt cache entry %s", path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

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
    """A file that appears at *path* complete, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
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


def copy_atomic(source: Path, dest: Path, mode: int = 0o755) -> None:
    """Copy *source* to *dest* through a temporary file and a rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dest, mode) as out, source.open("rb") as src:
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


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as out:
        out.write(data)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
