"""Merge an image's layers into ONE tar stream, never touching the disk.

Layers are read from the top down.  The first (upper-most) entry for a path
wins; a lower entry is dropped when an upper layer already defined that path,
whited it out (``.wh.NAME``), made its parent opaque (``.wh..wh..opq``), or
replaced one of its ancestors by something that is not a directory.  That is
the whiteout *plan* applied while streaming: nothing is deleted anywhere,
shadowed members are simply never written.  Directories implied by an upper
layer still take their owner and mode from the lower layer that declares them
(``tar2sqfs`` accepts a directory's entry after its children).

Layers are hostile input.  Every name is confined to the root: a leading
``/`` is stripped, ``..`` that climbs out of the root drops the entry, a
hard link whose target escapes is dropped, a relative symlink that climbs out
is rewritten to the absolute path it would reach inside the container.  Each
such repair is reported as a warning.  Hard links are written last, and only
when their target is a regular file of the merged tree, so the consumer never
sees a dangling link.
"""

from __future__ import annotations

import posixpath
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

from capsa import report
from capsa.errors import CapsaError, FormatError
from capsa.rootfs.compression import Prefetcher

log = report.getLogger("capsa.rootfs.layers")

_BUF = 1 << 20
_MAX_WARNINGS_PER_SOURCE = 8
# PAX keywords that tarfile derives from the TarInfo fields: stale copies
# would override the names we cleaned.
_DERIVED_PAX = frozenset(
    {"path", "linkpath", "uname", "gname", "uid", "gid", "size", "mtime", "atime", "ctime"}
)
_KEPT_TYPES = frozenset(
    {tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
     tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE}
)


@dataclass(frozen=True, slots=True)
class LayerFile:
    """A layer blob on disk; checked against *digest*/*size* while read."""

    path: Path
    digest: str | None = None
    size: int | None = None

    @property
    def label(self) -> str:
        return self.digest or self.path.name


@dataclass(frozen=True, slots=True)
class SyntheticEntry:
    """A member capsa adds itself (metadata, base directories)."""

    info: tarfile.TarInfo
    data: bytes = b""


@dataclass(slots=True)
class MergeReport:
    entries: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def clean_name(name: str) -> tuple[str | None, bool]:
    """(confined name or None if it escapes the root, whether it was repaired)."""
    repaired = name.startswith("/")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None, True
            parts.pop()
            repaired = True
            continue
        parts.append(part)
    return "/".join(parts), repaired


def confine_symlink(path: str, target: str) -> str | None:
    """The absolute in-root target when a relative *target* climbs out."""
    if target.startswith("/"):
        return None
    depth = path.count("/")  # directories between the root and the link
    level = depth
    for part in target.split("/"):
        if part == "..":
            level -= 1
            if level < 0:
                return "/" + posixpath.normpath(posixpath.join("/", posixpath.dirname(path),
                                                               target)).lstrip("/")
        elif part not in ("", "."):
            level += 1
    return None


def _ancestors(path: str) -> Iterator[str]:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


class _Plan:
    """What upper layers have already decided, to judge lower entries."""

    def __init__(self) -> None:
        self.emitted: dict[str, bool] = {}       # path -> is a directory
        self.regular: set[str] = set()           # emitted regular files
        self.implicit: set[str] = set()          # ancestors of emitted entries
        self.hidden: set[str] = set()            # whited out by upper layers
        self.opaque: set[str] = set()            # dirs whose lower children are hidden
        self.layer_hidden: set[str] = set()
        self.layer_opaque: set[str] = set()
        self.layer_paths: set[str] = set()      # emitted by the current layer

    def shadowed(self, path: str, is_dir: bool) -> str | None:
        """Why an entry from the current layer must be dropped, or None.

        Shadowing by upper layers is ordinary layering and returns ``""``;
        a reason worth a warning (a path through a symlink or file of the
        same layer: a classic escape attempt) is returned as text."""
        if path in self.emitted or path in self.hidden:
            return ""
        for parent in _ancestors(path):
            if parent in self.hidden or parent in self.opaque:
                return ""
            if self.emitted.get(parent) is False:
                if parent in self.layer_paths:
                    return f"lies under /{parent}, which is not a directory"
                return ""
        if not is_dir and path in self.implicit:
            return ""
        return None

    def add(self, path: str, is_dir: bool, is_regular: bool) -> None:
        self.emitted[path] = is_dir
        self.layer_paths.add(path)
        if is_regular:
            self.regular.add(path)
        for parent in _ancestors(path):
            if parent in self.implicit:
                break
            self.implicit.add(parent)

    def end_layer(self) -> None:
        """Whiteouts of a layer hide only what lies below it."""
        self.hidden |= self.layer_hidden
        self.opaque |= self.layer_opaque
        self.layer_hidden = set()
        self.layer_opaque = set()
        self.layer_paths = set()


class _Warner:
    def __init__(self, report: MergeReport) -> None:
        self.report = report
        self.counts: dict[str, int] = {}

    def __call__(self, source: str, message: str) -> None:
        seen = self.counts.get(source, 0)
        self.counts[source] = seen + 1
        text = f"layer {source}: {message}"
        self.report.warnings.append(text)
        if seen < _MAX_WARNINGS_PER_SOURCE:
            log.warning("%s", text)
        elif seen == _MAX_WARNINGS_PER_SOURCE:
            log.warning("layer %s: more entries repaired or dropped (not all shown)", source)


Redirects = Mapping[str, tuple[str, int]]  # dir symlink -> (its target, its layer)


class RedirectNeeded(Exception):
    """A lower layer turned a directory that upper layers write into into a
    symlink (``bin -> usr/bin``): upper entries must go through the link,
    as a runtime extracting the layers in order would write them.  Raised
    once the whole stream is planned; merge again with *redirects*."""

    def __init__(self, redirects: Redirects) -> None:
        super().__init__(f"{len(redirects)} directory symlink(s) to follow")
        self.redirects = dict(redirects)


class _CountingReader:
    """A layer blob that counts what has been read of it (for progress; the
    count is read from another thread, which an int allows)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._raw.read(n)
        self.count += len(chunk)
        return chunk


class LayerMerger:
    """Writes the merged tree of the given layers into *out* as one tar."""

    def __init__(self, out: BinaryIO, redirects: Redirects | None = None,
                 on_progress: Callable[[int, int], object] | None = None,
                 clamp_mtime: int | None = None) -> None:
        # (bytes of layer blobs read, bytes in all), a few times a second
        self._on_progress = on_progress
        self._blob_bytes = 0
        self._done_bytes = 0
        self._reading: _CountingReader | None = None
        self._shown = 0.0
        self._clamp_mtime = clamp_mtime
        self._redirects = dict(redirects or {})
        self._found: dict[str, tuple[str, int]] = {}
        self._index = 0
        self.report = MergeReport()
        self._warn = _Warner(self.report)
        self._plan = _Plan()
        self._links: list[tuple[str, tarfile.TarInfo]] = []
        # Closed by merge() (or abandoned on error), not by a with block.
        # Members are serialised here (TarInfo.tobuf) and written straight
        # to *out*: tarfile's own stream writer re-slices a byte string on
        # every write, which costs more than decompressing the layers.
        self._out = out

    def merge(self, layers: Sequence[LayerFile], *, top: Sequence[SyntheticEntry] = (),
              base: Sequence[SyntheticEntry] = ()) -> MergeReport:
        """*layers* bottom first, as in a manifest; *top* overrides them all,
        *base* fills in only what no layer has."""
        self._index = len(layers)
        self._blob_bytes = sum(_blob_size(layer) for layer in layers)
        self._synthetic("capsa metadata", top)
        for index in reversed(range(len(layers))):
            self._index = index
            self._layer(layers[index])
            self._done_bytes += _blob_size(layers[index])
            self._progress(force=True)
        self._index = -1
        self._synthetic("capsa base", base)
        if self._found:
            raise RedirectNeeded({**self._redirects, **self._found})
        self._flush_links()
        self._out.write(b"\0" * (2 * tarfile.BLOCKSIZE))  # end-of-archive marker
        self._out.flush()
        return self.report

    def _synthetic(self, label: str, entries: Sequence[SyntheticEntry]) -> None:
        import io

        for entry in entries:
            self._consider(label, entry.info, io.BytesIO(entry.data))
        self._plan.end_layer()

    def _layer(self, layer: LayerFile) -> None:
        try:
            with layer.path.open("rb") as raw:
                self._reading = _CountingReader(raw)
                with Prefetcher(cast(BinaryIO, self._reading), layer.digest,
                                layer.size) as stream:
                    self._read_tar(layer.label, cast(BinaryIO, stream))
                    stream.finish()
        except (CapsaError, BrokenPipeError):
            raise
        except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as err:
            raise FormatError(f"layer {layer.label} is not a valid tar archive: {err}") from err
        except Exception as err:  # zstandard.ZstdError and friends
            raise FormatError(f"layer {layer.label} cannot be decompressed: {err}") from err
        finally:
            self._reading = None
        self._plan.end_layer()

    def _progress(self, *, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._shown >= 0.1:
            self._shown = now
            reading = self._reading.count if self._reading is not None else 0
            self._on_progress(min(self._done_bytes + reading, self._blob_bytes),
                              self._blob_bytes)

    def _read_tar(self, label: str, stream: BinaryIO) -> None:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115
        except tarfile.ReadError as err:
            if "empty" in str(err):
                return  # an empty layer is valid
            raise
        with tar:
            for member in tar:
                data = tar.extractfile(member) if member.isreg() else None
                self._consider(label, member, data)
                self._progress()

    def _consider(self, label: str, info: tarfile.TarInfo, data: IO[bytes] | None) -> None:
        name, repaired = clean_name(info.name)
        if name is None:
            self._warn(label, f"{info.name!r} points outside the root filesystem: skipped")
            return
        if repaired:
            self._warn(label, f"{info.name!r} confined to /{name}")
        name = self._redirected(name)
        base = posixpath.basename(name)
        if base.startswith(".wh."):
            self._whiteout(label, name, base)
            return
        if info.type not in _KEPT_TYPES and not info.isreg():
            self._warn(label, f"/{name}: unsupported tar entry type {info.type!r}: skipped")
            return
        if name == "":
            self._root(info)
            return
        if info.issym() and name in self._plan.implicit and name not in self._plan.emitted:
            self._found_directory_link(name, info.linkname)
            return
        reason = self._plan.shadowed(name, info.isdir())
        if reason is not None:
            if reason:
                self._warn(label, f"/{name}: {reason}: skipped")
            return
        self._emit(label, name, info, data)

    def _found_directory_link(self, name: str, target: str) -> None:
        joined = target if target.startswith("/") else f"{posixpath.dirname(name)}/{target}"
        resolved, _ = clean_name(joined)
        if resolved and resolved != name and name not in self._redirects:
            self._found[name] = (resolved, self._index)

    def _redirected(self, name: str) -> str:
        """*name* with its leading directories resolved through the symlinks
        that lower layers put there (see :class:`RedirectNeeded`)."""
        for _hop in range(16):
            parts = name.split("/")
            for cut in range(1, len(parts)):
                link = self._redirects.get("/".join(parts[:cut]))
                if link is not None and self._index > link[1]:
                    name = "/".join([link[0], *parts[cut:]])
                    break
            else:
                return name
        return name

    def _whiteout(self, label: str, name: str, base: str) -> None:
        parent = posixpath.dirname(name)
        if base == ".wh..wh..opq":
            self._plan.layer_opaque.add(parent)
        elif base.startswith(".wh..wh."):
            return  # aufs bookkeeping (hard-link dirs): nothing to apply
        else:
            self._plan.layer_hidden.add(posixpath.join(parent, base[4:]))

    def _root(self, info: tarfile.TarInfo) -> None:
        if "" in self._plan.emitted or not info.isdir():
            return
        self._plan.emitted[""] = True
        self._write(".", info, None)

    def _emit(self, label: str, name: str, info: tarfile.TarInfo,
              data: IO[bytes] | None) -> None:
        if info.islnk():
            target, _repaired = clean_name(info.linkname)
            if target:
                target = self._redirected(target)
            if target is None or target == "" or target == name:
                self._warn(label, f"/{name}: hard link to {info.linkname!r} outside "
                                  "the root filesystem: skipped")
                return
            self._plan.add(name, False, False)
            self._links.append((label, self._copy_info(info, name, target)))
            return
        if info.issym():
            confined = confine_symlink(name, info.linkname)
            if confined is not None:
                self._warn(label, f"/{name}: symlink to {info.linkname!r} leaves the root "
                                  f"filesystem: retargeted to {confined}")
                info.linkname = confined
        self._plan.add(name, info.isdir(), info.isreg())
        self._write(name, info, data)

    def _copy_info(self, info: tarfile.TarInfo, name: str, linkname: str) -> tarfile.TarInfo:
        info.name = name
        info.linkname = linkname
        return info

    def _write(self, name: str, info: tarfile.TarInfo, data: IO[bytes] | None) -> None:
        info.name = name
        if info.isreg():
            info.type = tarfile.REGTYPE
        else:
            info.size = 0
        info.pax_headers = {k: v for k, v in info.pax_headers.items() if k not in _DERIVED_PAX}
        if self._clamp_mtime is not None and info.mtime > self._clamp_mtime:
            info.mtime = self._clamp_mtime
        self._out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.size:
            self._copy_data(info, data)
        self.report.entries += 1
        self.report.bytes += info.size

    def _copy_data(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> None:
        if data is None:
            raise FormatError(f"/{info.name}: no data for a regular file")
        left = info.size
        while left:
            chunk = data.read(min(left, _BUF))
            if not chunk:
                raise FormatError(f"/{info.name}: file data ends early")
            self._out.write(chunk)
            left -= len(chunk)
        pad = -info.size % tarfile.BLOCKSIZE
        if pad:
            self._out.write(b"\0" * pad)

    def _flush_links(self) -> None:
        """Hard links last: their targets are all known by now."""
        for label, info in self._links:
            if info.linkname not in self._plan.regular:
                self._warn(label, f"/{info.name}: hard link to missing /{info.linkname}: skipped")
                continue
            self._write(info.name, info, None)


def merge_layers(out: BinaryIO, layers: Sequence[LayerFile], *,
                 top: Iterable[SyntheticEntry] = (),
                 base: Iterable[SyntheticEntry] = (),
                 redirects: Redirects | None = None,
                 on_progress: Callable[[int, int], object] | None = None,
                 clamp_mtime: int | None = None) -> MergeReport:
    """Write the merged root filesystem of *layers* (bottom first) to *out*;
    *on_progress* gets (bytes of the layer blobs read, their total) a few
    times a second; with *clamp_mtime*, no entry is newer than it
    (SOURCE_DATE_EPOCH).  May raise :class:`RedirectNeeded`: then merge
    again, into a fresh *out*."""
    merger = LayerMerger(out, redirects, on_progress, clamp_mtime)
    return merger.merge(layers, top=list(top), base=list(base))


def _blob_size(layer: LayerFile) -> int:
    if layer.size is not None:
        return layer.size
    try:
        return layer.path.stat().st_size
    except OSError:
        return 0
