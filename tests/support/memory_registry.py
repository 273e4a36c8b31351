"""An in-memory registry that is also a :class:`Transport`, for unit tests
of anything that talks to registries (no sockets, no threads).

::

    reg = MemoryRegistry("registry.test")
    reg.add_image("library/alpine", "latest", manifest_bytes, blobs)
    client = RegistryClient(reg)

Authentication modes: ``auth=None`` (anonymous), ``"basic"``, ``"bearer"``
(a token server at ``https://auth.test/token`` answered by the same object;
``anonymous_pull`` lets clients without credentials pull, as Docker Hub
does).  ``requests`` records what was sent; ``faults`` maps a path
substring to a status to answer instead (429, 500...); ``flaky`` a path
substring to how many times to answer 503 first; ``break_blobs`` a digest to
how many GETs break half-way (connection lost); ``blob_redirect``
answers blob GETs with a 307 to ``https://cdn.test/...`` (also served here).
:class:`MemoryNetwork` routes to several registries by host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from capsa.errors import RegistryError
from capsa.registry.transport import BytesResponse, ConnectionLost, Headers, Request, Response

TOKEN_REALM = "https://auth.test/token"
CDN_HOST = "cdn.test"
_ROUTE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]*)$")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(status: int, code: str, message: str,
           headers: Mapping[str, str] | None = None) -> BytesResponse:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return BytesResponse(status, body, Headers({"Content-Type": "application/json",
                                                "Content-Length": str(len(body)),
                                                **(headers or {})}))


def _read_body(request: Request) -> bytes:
    body = request.body
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    chunks = []
    while chunk := body.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class MemoryRegistry:
    """One registry host held in dictionaries (see the module docstring)."""

    host: str = "registry.test"
    auth: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    anonymous_pull: bool = False
    blob_redirect: bool = False
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    flaky: dict[str, int] = field(default_factory=dict)
    break_blobs: dict[str, int] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    closed: bool = False
    _uploads: dict[str, bytearray] = field(default_factory=dict)
    _tokens: dict[str, tuple[str | None, frozenset[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- filling it

    def add_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store *data* under *digest* (default: its real digest)."""
        digest = digest or _digest(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(self, name: str, reference: str, data: bytes,
                     media_type: str | None = None) -> str:
        media_type = media_type or json.loads(data).get("mediaType", "")
        digest = _digest(data)
        self.manifests[(name, reference)] = (media_type, data)
        self.manifests[(name, digest)] = (media_type, data)
        return digest

    def add_image(self, name: str, reference: str, manifest: bytes,
                  blobs: Iterable[bytes] | Mapping[str, bytes] = (),
                  media_type: str | None = None) -> str:
        items = blobs.items() if isinstance(blobs, Mapping) else ((None, b) for b in blobs)
        for digest, data in items:
            self.add_blob(data, digest)
        return self.add_manifest(name, reference, manifest, media_type)

    # -- Transport

    def send(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
        parts = urllib.parse.urlsplit(request.url)
        if parts.netloc == "auth.test":
            return self._token(request, parts)
        if parts.netloc == CDN_HOST:
            return self._cdn(parts.path)
        if parts.netloc != self.host:
            raise RegistryError(f"unknown host {parts.hostname!r}")
        for needle, status in self.faults.items():
            if needle in parts.path:
                return _error(status, "FAULT", "injected fault", {"Retry-After": "60"})
        for needle, times in self.flaky.items():
            if needle in parts.path and times > 0:
                self.flaky[needle] = times - 1
                return _error(503, "UNAVAILABLE", "try again")
        denied = self._check_auth(request, parts.path)
        if denied is not None:
            return denied
        return self._route(request, parts)

    def close(self) -> None:
        self.closed = True

    # -- authentication

    def _challenge(self, scope: str) -> BytesResponse:
        if self.auth == "basic":
            header = 'Basic realm="memory"'
        else:
            header = (f'Bearer realm="{TOKEN_REALM}",service="{self.host}"'
                      + (f',scope="{scope}"' if scope else ""))
        return _error(401, "UNAUTHORIZED", "authentication required",
                      {"WWW-Authenticate": header})

    def _basic_user(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return user if self.users.get(user) == password else None

    def _check_auth(self, request: Request, path: str) -> BytesResponse | None:
        if self.auth is None:
            return None
        match = _ROUTE.match(path) or _UPLOAD.match(path)
        name = match.group("name") if match else ""
        push = request.method in ("POST", "PUT", "PATCH", "DELETE")
        action = "push" if push else "pull"
        scope = f"repository:{name}:{action}" if name else ""
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            return None if self._basic_user(header) else self._challenge(scope)
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        grant = self._tokens.get(token)
        if grant is None:
            return self._challenge(scope)
        if name and f"{name}:{action}" not in grant[1]:
            return self._challenge(scope)
        return None

    def _token(self, request: Request, parts: urllib.parse.SplitResult) -> Response:
        user = None
        header = request.headers.get("Authorization", "")
        if header:
            user = self._basic_user(header)
            if user is None:
                return _error(401, "UNAUTHORIZED", "bad credentials")
        query = urllib.parse.parse_qs(parts.query)
        granted: set[str] = set()
        for scope in (s for v in query.get("scope", []) for s in v.split()):
            _, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            for action in actions.split(","):
                if user is not None or (self.anonymous_pull and action == "pull"):
                    granted.add(f"{name}:{action}")
        token = uuid.uuid4().hex
        self._tokens[token] = (user, frozenset(granted))
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        return BytesResponse(200, body, Headers({"Content-Type": "application/json"}))

    # -- the API

    def _route(self, request: Request, parts: urllib.parse.SplitResult) -> Response:
        path = parts.path
        if path == "/v2/":
            return BytesResponse(200, b"{}", Headers({"Content-Type": "application/json"}))
        upload = _UPLOAD.match(path)
        if upload:
            return self._upload(request, upload.group("name"), upload.group("id"), parts.query)
        match = _ROUTE.match(path)
        if match is None:
            return _error(404, "NOT_FOUND", "no such endpoint")
        name, kind, ref = match.group("name", "kind", "ref")
        if kind == "manifests":
            if request.method == "PUT":
                media_type = request.headers.get("Content-Type", "")
                digest = self.add_manifest(name, ref, _read_body(request), media_type)
                return BytesResponse(201, b"", Headers({"Docker-Content-Digest": digest}))
            return self._manifest(request, name, ref)
        return self._blob(request, ref)

    def _manifest(self, request: Request, name: str, ref: str) -> Response:
        found = self.manifests.get((name, ref))
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        media_type, data = found
        body = b"" if request.method == "HEAD" else data
        return BytesResponse(200, body, Headers({
            "Content-Type": media_type, "Content-Length": str(len(data)),
            "Docker-Content-Digest": _digest(data)}), request.url)

    def _blob(self, request: Request, digest: str) -> Response:
        if digest not in self.blobs:
            return _error(404, "BLOB_UNKNOWN", "blob unknown")
        if self.blob_redirect and request.method == "GET":
            return BytesResponse(307, b"", Headers({
                "Location": f"https://{CDN_HOST}/blob/{digest}"}))
        data = self.blobs[digest]
        headers = Headers({"Content-Type": "application/octet-stream",
                           "Content-Length": str(len(data))})
        if request.method == "GET" and self.break_blobs.get(digest, 0) > 0:
            self.break_blobs[digest] -= 1
            return _BreakingResponse(200, data, headers)
        body = b"" if request.method == "HEAD" else data
        return BytesResponse(200, body, headers)

    def _cdn(self, path: str) -> Response:
        digest = path.rsplit("/", 1)[-1]
        data = self.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN", "blob unknown")
        return BytesResponse(200, data, Headers({"Content-Length": str(len(data))}))

    def _upload(self, request: Request, name: str, upload_id: str, query: str) -> Response:
        if request.method == "POST":
            new = uuid.uuid4().hex
            self._uploads[new] = bytearray()
            return BytesResponse(202, b"", Headers({
                "Location": f"/v2/{name}/blobs/uploads/{new}?state=x",
                "Content-Length": "0"}))
        if upload_id not in self._uploads:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
        self._uploads[upload_id] += _read_body(request)
        digest = urllib.parse.parse_qs(query).get("digest", [""])[0]
        data = bytes(self._uploads.pop(upload_id))
        if _digest(data) != digest:
            return _error(400, "DIGEST_INVALID", "provided digest did not match")
        self.blobs[digest] = data
        return BytesResponse(201, b"", Headers({"Docker-Content-Digest": digest}))


class _BreakingResponse(BytesResponse):
    """Sends half of the body, then the connection "breaks"."""

    def read(self, n: int = -1) -> bytes:
        half = len(self.body) // 2
        if self._offset >= half:
            raise ConnectionLost("connection to registry.test broke: reset by peer")
        return super().read(min(n, half - self._offset) if n >= 0 else half - self._offset)


@dataclass
class MemoryNetwork:
    """Several :class:`MemoryRegistry` hosts behind one transport."""

    registries: list[MemoryRegistry]

    def send(self, request: Request) -> Response:
        host = urllib.parse.urlsplit(request.url).netloc
        for registry in self.registries:
            if host in (registry.host, "auth.test", CDN_HOST):
                return registry.send(request)
        raise RegistryError(f"unknown host {host.split(':')[0]!r}")

    def close(self) -> None:
        for registry in self.registries:
            registry.close()
