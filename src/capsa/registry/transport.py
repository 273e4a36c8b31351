"""The one network choke point: a :class:`Transport` sends one HTTP request
and returns the response, nothing more (no redirects, no auth, no retries:
:mod:`capsa.registry.client` does those).

:class:`HTTPTransport` is the real one, on :mod:`http.client`, with a
thread-safe pool of keep-alive connections per origin, so parallel blob
downloads reuse connections.  Tests hand the client an in-memory transport
instead (``MemoryRegistry`` in the tests' ``support/memory_registry.py``).

Connection failures become :class:`capsa.errors.RegistryError` with one
clear line (unknown host, connection refused, TLS failure, timeout).
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol

from capsa.errors import RegistryError

if TYPE_CHECKING:  # imported when a real connection is made (import cost)
    import http.client
    import ssl

USER_AGENT = "capsa (apptainer-compatible)"


class ConnectionLost(RegistryError):
    """An established connection broke (worth retrying, unlike a refused
    connection or an unknown host)."""
_CHUNK = 1 << 20


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only response headers (last value wins)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = {k.lower(): v for k, v in pairs}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request.  *body* is bytes or a stream of *body_size* bytes."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | BinaryIO | None = None
    body_size: int | None = None

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc


class Response(Protocol):
    """What a transport returns; ``read`` streams the body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    url: str

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Sends one request; safe to call from several threads at once."""

    def send(self, request: Request) -> Response: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class BytesResponse:
    """A response whose body is in memory (fakes, and error bodies)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=Headers)
    url: str = ""
    reason: str = ""
    _offset: int = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.body) if n < 0 else min(len(self.body), self._offset + n)
        chunk = self.body[self._offset:end]
        self._offset = end
        return chunk

    def close(self) -> None:
        self._offset = len(self.body)


# --------------------------------------------------------------------------
# The real transport.


_Origin = tuple[str, str, int]


class _PooledResponse:
    """An :class:`http.client.HTTPResponse` that gives its connection back to
    the pool once the body has been read to the end."""

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection,
                 origin: _Origin, pool: HTTPTransport, url: str) -> None:
        self._raw = raw
        self._conn: http.client.HTTPConnection | None = conn
        self._origin = origin
        self._pool = pool
        self.status = raw.status
        self.reason = raw.reason
        self.headers: Mapping[str, str] = Headers(raw.getheaders())
        self.url = url

    def read(self, n: int = -1) -> bytes:
        import http.client

        try:
            data = self._raw.read() if n < 0 else self._raw.read(n)
        except (OSError, http.client.HTTPException) as err:
            self._discard()
            raise ConnectionLost(f"connection to {self._origin[1]} broke: {err}") from err
        if self._raw.isclosed():
            self._release()
        return data

    def close(self) -> None:
        if self._conn is None:
            return
        if self._raw.isclosed():
            self._release()
        else:  # unread body: the connection can not be reused
            self._discard()

    def _release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._pool._give_back(self._origin, conn, reusable=not self._raw.will_close)

    def _discard(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._raw.close()
            self._pool._give_back(self._origin, conn, reusable=False)


class HTTPTransport:
    """HTTP/1.1 over :mod:`http.client` with keep-alive connection pools.

    TLS uses the system's trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR``
    are honoured by OpenSSL).  ``verify_tls=False`` accepts any certificate.
    """

    def __init__(self, *, timeout: float = 60.0, verify_tls: bool = True,
                 max_idle_per_origin: int = 8) -> None:
        self._timeout = timeout
        self._verify_tls = verify_tls
        self._max_idle = max_idle_per_origin
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def send(self, request: Request) -> Response:
        import http.client

        parts = urllib.parse.urlsplit(request.url)
        origin = self._origin(parts)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {"User-Agent": USER_AGENT, **request.headers}
        if request.body_size is not None:
            headers["Content-Length"] = str(request.body_size)
        # A pooled connection may have been closed by the server meanwhile:
        # retry once on a fresh one when nothing can have been consumed.
        for attempt in (0, 1):
            conn, reused = self._take(origin)
            try:
                conn.request(request.method, target, body=request.body, headers=headers)
                raw = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as err:
                conn.close()
                if reused and attempt == 0 and not _is_stream(request.body):
                    continue
                raise ConnectionLost(f"connection to {origin[1]} broke: {err}") from err
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                raise _connect_error(origin, err) from err
            except BaseException:  # e.g. a streamed body failing its digest
                conn.close()
                raise
            return _PooledResponse(raw, conn, origin, self, request.url)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # -- pool

    @staticmethod
    def _origin(parts: urllib.parse.SplitResult) -> _Origin:
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise RegistryError(f"unsupported URL scheme: {parts.scheme!r}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as err:
            raise RegistryError(f"invalid port in {parts.netloc!r}") from err
        return scheme, parts.hostname or "", port

    def _take(self, origin: _Origin) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            conns = self._idle.get(origin)
            if conns:
                return conns.pop(), True
        return self._connect(origin), False

    def _connect(self, origin: _Origin) -> http.client.HTTPConnection:
        import http.client

        scheme, host, port = origin
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=self._timeout,
                                              blocksize=_CHUNK)
        return http.client.HTTPSConnection(host, port, timeout=self._timeout,
                                           context=self._context(), blocksize=_CHUNK)

    def _context(self) -> ssl.SSLContext:
        import ssl

        with self._lock:
            if self._ssl is None:
                ctx = ssl.create_default_context()
                if not self._verify_tls:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._ssl = ctx
            return self._ssl

    def _give_back(self, origin: _Origin, conn: http.client.HTTPConnection,
                   reusable: bool) -> None:
        if reusable:
            with self._lock:
                conns = self._idle.setdefault(origin, [])
                if len(conns) < self._max_idle:
                    conns.append(conn)
                    return
        conn.close()


def _is_stream(body: object) -> bool:
    return body is not None and not isinstance(body, bytes | bytearray)


def _connect_error(origin: _Origin, err: BaseException) -> RegistryError:
    import http.client
    import socket
    import ssl

    scheme, host, port = origin
    where = f"{host}:{port}"
    if isinstance(err, socket.gaierror):
        return RegistryError(f"unknown host {host!r}: {err.strerror or err}")
    if isinstance(err, ConnectionRefusedError):
        return RegistryError(f"connection refused by {where}")
    if isinstance(err, ssl.SSLError | ssl.CertificateError):
        hint = " (is it a plain-HTTP registry? use --no-https)" if scheme == "https" else ""
        return RegistryError(f"TLS handshake with {where} failed: {err}{hint}")
    if isinstance(err, TimeoutError | socket.timeout):
        return ConnectionLost(f"timed out talking to {where}")
    if isinstance(err, http.client.BadStatusLine) and scheme == "https":
        return RegistryError(f"{where} did not answer HTTPS")
    return RegistryError(f"cannot reach {where}: {err}")
