"""Layer blobs as plain tar streams: compression detected from the magic
bytes (media types lie), gzip and zstd decompressed in a worker thread, the
digest checked over every byte on the way.

gzip goes through ISA-L (the ``isal`` package) when it is installed: it
inflates about 2.5 times as fast as zlib (3.1 s against 1.3 s for an 860 MB
tar on this project's 2-core VM), and inflating is the slowest stage of a
pull.  zlib's ``gzip`` module is the fallback, with the same results.
"""

from __future__ import annotations

import enum
import gzip
import queue
import threading
import zlib
from typing import BinaryIO, cast

from capsa.digest import VerifyingReader

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


class Compression(enum.Enum):
    PLAIN = "plain"
    GZIP = "gzip"
    ZSTD = "zstd"


def detect_compression(head: bytes) -> Compression:
    """What the first bytes of a layer say it is (media types lie)."""
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.PLAIN


class _Prefixed:
    """A reader that first returns *head*, then the rest of *raw*."""

    def __init__(self, head: bytes, raw: BinaryIO | VerifyingReader) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                head, self._head = self._head, b""
                rest = self._raw.read(-1 if n < 0 else n - len(head))
                return head + rest
            head, self._head = self._head[:n], self._head[n:]
            return head
        return self._raw.read(n)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        # ISA-L's reader fills buffers; the sources (a verifying reader, a
        # registry response) only have read().
        data = self.read(len(buffer))
        memoryview(buffer)[:len(data)] = data
        return len(data)


def decompressed(raw: BinaryIO | VerifyingReader) -> BinaryIO:
    """*raw* decompressed according to its magic bytes."""
    head = raw.read(4)
    stream = cast(BinaryIO, _Prefixed(head, raw))
    kind = detect_compression(head)
    if kind is Compression.GZIP:
        return gunzipped(stream)
    if kind is Compression.ZSTD:
        import zstandard  # lazily: only zstd layers need it

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return cast(BinaryIO, reader)
    return stream


def gunzipped(stream: BinaryIO) -> BinaryIO:
    """*stream* inflated, by ISA-L when it is installed, else by zlib.

    Errors are those of :mod:`gzip` either way: ``EOFError`` for a cut
    stream, ``gzip.BadGzipFile`` for a bad header, ``zlib.error`` for a
    corrupt deflate block (ISA-L's own error is translated)."""
    try:
        from isal import igzip, isal_zlib
    except ImportError:
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    inflating = igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[no-untyped-call]
    error = cast("type[Exception]", isal_zlib.error)  # the stubs call it an instance
    return cast(BinaryIO, _IsalReader(cast(BinaryIO, inflating), error))


class _IsalReader:
    """An ``IGzipFile`` whose corrupt-data errors are ``zlib.error``."""

    def __init__(self, inflating: BinaryIO, isal_error: type[Exception]) -> None:
        self._inflating = inflating
        self._isal_error = isal_error

    def read(self, n: int = -1) -> bytes:
        try:
            return self._inflating.read(n)
        except self._isal_error as err:
            raise zlib.error(str(err)) from err


class Prefetcher:
    """Reads, verifies and decompresses a layer in a worker thread.

    zlib, zstd and hashlib release the GIL, so this runs on another core
    while the main thread parses tar headers and feeds ``tar2sqfs``.
    """

    _DONE = object()

    def __init__(self, raw: BinaryIO, digest: str | None = None, size: int | None = None
                 ) -> None:
        self._raw = raw
        self._digest = digest
        self._size = size
        self._queue: queue.Queue[object] = queue.Queue(maxsize=16)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0
        self._ended = False
        self._thread = threading.Thread(target=self._produce, daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            self._drain_queue()
            self._thread.join(0.05)

    def _drain_queue(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _produce(self) -> None:
        try:
            source: BinaryIO | VerifyingReader = self._raw
            if self._digest is not None and self._size is not None:
                source = VerifyingReader(self._raw, self._digest, self._size)
            stream = decompressed(source)
            while not self._stop.is_set():
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                self._queue.put(chunk)
            if isinstance(source, VerifyingReader) and not self._stop.is_set():
                source.drain()  # the digest covers every byte, padding included
            self._queue.put(self._DONE)
        except BaseException as err:  # handed to the reading thread
            self._queue.put(err)

    def _next(self) -> bool:
        if self._ended:
            return False
        item = self._queue.get()
        if item is self._DONE:
            self._ended = True
            return False
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        assert isinstance(item, bytes)
        self._buf, self._pos = item, 0
        return True

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._buf) and not self._next():
            return b""
        if n < 0:
            parts = [self._buf[self._pos:]]
            while self._next():
                parts.append(self._buf)
            self._buf, self._pos = b"", 0
            return b"".join(parts)
        chunk = self._buf[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk

    def finish(self) -> None:
        """Read to the end, so the digest is checked and errors surface."""
        self._buf, self._pos = b"", 0
        while self._next():
            pass
