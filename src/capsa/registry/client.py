"""The registry client: resolve a reference to an image, fetch verified
blobs, and push blobs and manifests (Docker Registry HTTP API v2 / OCI
distribution).

Everything goes through one :class:`~capsa.registry.transport.Transport`;
the client adds URLs, authentication (:mod:`capsa.registry.auth`),
redirects, mirrors and error mapping.  It is thread-safe: download blobs in
parallel with one client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from capsa import report
from capsa.digest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    VerifyingReader,
    hasher_for,
    sha256_digest,
)
from capsa.errors import (
    AuthError,
    CapsaError,
    DigestMismatchError,
    FormatError,
    NotFoundError,
    RegistryError,
)
from capsa.jsondoc import load_object
from capsa.reference import Reference, parse_reference
from capsa.registry import auth
from capsa.registry.config import Endpoint, RegistriesConfig
from capsa.registry.credentials import Credentials, CredentialStore
from capsa.registry.manifest import (
    IMAGE_CONFIG_TYPES,
    MAX_MANIFEST_SIZE,
    Index,
    Manifest,
    check_kind,
    host_platform,
    media_type_of,
    parse_index,
    parse_manifest,
)
from capsa.registry.transport import ConnectionLost, Request, Response, Transport

log = report.getLogger("capsa.registry")

MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_MAX_REDIRECTS = 5
_CHUNK = 1 << 20
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True, eq=False)
class ResolvedImage:
    """An image found in a registry, ready to be fetched blob by blob.

    ``reference`` is where it was found (after search registries and
    mirrors: pass it to :meth:`RegistryClient.fetch_blob`); ``manifest`` the
    descriptor of the platform's image manifest (``manifest.digest`` is the
    cache key); ``index`` the index it was picked from, if any.
    """

    reference: Reference
    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    platform: Platform | None = None
    index: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.manifest.digest


class RegistryClient:
    """Talks to OCI registries through *transport*.

    *no_https*: plain HTTP to every registry (``--no-https``); otherwise
    HTTPS except for registries marked insecure in *config*.
    """

    def __init__(self, transport: Transport, credentials: CredentialStore | None = None,
                 config: RegistriesConfig | None = None, *, no_https: bool = False) -> None:
        self.transport = transport
        self.credentials = credentials or CredentialStore()
        self.config = config or RegistriesConfig()
        self.no_https = no_https
        # Transient failures (5xx, broken connections) are retried this many
        # times, after retry_delay, 2*retry_delay... seconds.
        self.retries = 2
        self.retry_delay = 1.0
        self._auth = auth.AuthCache()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------
    # Resolving

    def resolve(self, ref: Reference | str, platform: Platform | None = None, *,
                config_types: frozenset[str] | None = IMAGE_CONFIG_TYPES) -> ResolvedImage:
        """Find *ref*'s image for *platform* (default: this host's).

        Tries the search registries for unqualified names and mirrors
        before the registry itself.  *config_types* ``None`` accepts any
        artifact (``oras://``).
        """
        if isinstance(ref, str):
            ref = parse_reference(ref)
        want = platform or host_platform()
        errors: list[CapsaError] = []
        candidates = self.config.candidates(ref)
        for candidate in candidates:
            for endpoint in self.config.endpoints(candidate):
                try:
                    return self._resolve_at(endpoint.reference, want, config_types)
                except (NotFoundError, RegistryError) as err:  # incl. AuthError
                    errors.append(err)
                    self._log_skip(endpoint, err)
        raise _best_error(ref, candidates, errors)

    def _log_skip(self, endpoint: Endpoint, err: CapsaError) -> None:
        kind = "mirror" if endpoint.mirror else "registry"
        log.debug("%s %s failed: %s", kind, endpoint.reference.registry, err)

    def _resolve_at(self, ref: Reference, want: Platform,
                    config_types: frozenset[str] | None) -> ResolvedImage:
        desc, data, doc = self.fetch_manifest(ref)
        index_desc: Descriptor | None = None
        chosen: Platform | None = None
        if check_kind(desc.media_type) == "index":
            index: Index = parse_index(doc, desc.media_type)
            index_desc = desc
            desc = index.select(want)
            chosen = desc.platform
            data, doc = self._manifest_by_digest(ref, desc)
            check_kind(desc.media_type)
        manifest: Manifest = parse_manifest(doc, desc.media_type, config_types)
        return ResolvedImage(
            reference=ref, manifest=desc, manifest_bytes=data, config=manifest.config,
            layers=manifest.layers, platform=chosen, index=index_desc,
            annotations=manifest.annotations,
        )

    def fetch_manifest(self, ref: Reference) -> tuple[Descriptor, bytes, dict[str, Any]]:
        """The manifest or index *ref* names: descriptor, bytes, parsed JSON."""
        resp = self._request(ref, "GET", f"manifests/{ref.reference}",
                             {"Accept": MANIFEST_ACCEPT}, what=f"image {ref}")
        data = _read_limited(resp, MAX_MANIFEST_SIZE, f"manifest of {ref}")
        digest = sha256_digest(data)
        if ref.digest:
            hasher = hasher_for(ref.digest)
            hasher.update(data)
            actual = f"{ref.digest.split(':', 1)[0]}:{hasher.hexdigest()}"
            if actual != ref.digest:
                raise DigestMismatchError(f"manifest digest mismatch for {ref}: got {actual}")
        doc = load_object(data, f"manifest of {ref}")
        media_type = media_type_of(doc, resp.headers.get("content-type", ""))
        return Descriptor(media_type, digest, len(data)), data, doc

    def _manifest_by_digest(self, ref: Reference,
                            desc: Descriptor) -> tuple[bytes, dict[str, Any]]:
        pinned = Reference(ref.registry, ref.repository, None, desc.digest)
        got, data, doc = self.fetch_manifest(pinned)
        if got.size != desc.size:
            raise DigestMismatchError(f"manifest {desc.digest} is {got.size} bytes, "
                                      f"the index says {desc.size}")
        return data, doc

    # ------------------------------------------------------------------
    # Blobs

    def fetch_blob(self, ref: Reference, desc: Descriptor, out: BinaryIO,
                   progress: Progress | None = None) -> None:
        """Stream blob *desc* of repository *ref* into *out*, verifying its
        size and digest on the way.  On any failure *out* is emptied (when
        seekable) and the error raised: nothing unverified is kept.  A
        connection that breaks mid-blob is retried from the start (when
        *out* can be emptied).  *progress* gets the number of bytes written
        after each chunk, and minus what it was told when a download
        restarts."""
        written = 0

        def count(n: int) -> None:
            nonlocal written
            written += n
            if progress is not None:
                progress(n)

        for attempt in range(self.retries + 1):
            try:
                self._fetch_blob_once(ref, desc, out, count)
                return
            except ConnectionLost:
                if progress is not None and written:
                    progress(-written)
                written = 0
                if not _discard(out) or attempt == self.retries:
                    raise
                log.debug("blob %s: connection lost, retrying", desc.digest)
                self._sleep(attempt)
            except BaseException:
                _discard(out)
                raise

    def _fetch_blob_once(self, ref: Reference, desc: Descriptor, out: BinaryIO,
                         progress: Progress | None) -> None:
        resp = self._request(ref, "GET", f"blobs/{desc.digest}", {},
                             what=f"blob {desc.digest} of {ref.name}")
        try:
            _check_length(resp, desc)
            _copy_verified(resp, desc, out, progress)
        finally:
            resp.close()

    def fetch_blob_bytes(self, ref: Reference, desc: Descriptor,
                         limit: int = 64 << 20) -> bytes:
        """A small blob (an image config) in memory, verified."""
        if desc.size > limit:
            raise FormatError(f"blob {desc.digest} is {desc.size} bytes, more than {limit}")
        import io

        buf = io.BytesIO()
        self.fetch_blob(ref, desc, buf)
        return buf.getvalue()

    # ------------------------------------------------------------------
    # Pushing

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        try:
            self._request(ref, "HEAD", f"blobs/{digest}", {}, push=True,
                          what=f"blob {digest}").close()
        except NotFoundError:
            return False
        return True

    def push_blob(self, ref: Reference, desc: Descriptor, source: BinaryIO | bytes) -> None:
        """Upload blob *desc* (monolithic POST then PUT) unless it is there."""
        if self.blob_exists(ref, desc.digest):
            log.debug("blob %s already in %s", desc.digest, ref.name)
            return
        start = self._request(ref, "POST", "blobs/uploads/", {"Content-Length": "0"},
                              body=b"", push=True, what=f"upload to {ref.name}")
        start.close()
        location = start.headers.get("location")
        if not location:
            raise RegistryError(f"{ref.registry} started an upload without a Location")
        url = _join_url(self._base(ref), location)
        sep = "&" if "?" in url else "?"
        body: BinaryIO | bytes = source
        if not isinstance(source, bytes):
            body = VerifyingReader(source, desc.digest, desc.size)  # type: ignore[assignment]
        self._request(ref, "PUT", None, {"Content-Type": "application/octet-stream"},
                      body=body, body_size=desc.size, push=True, url=f"{url}{sep}digest="
                      f"{desc.digest}", what=f"blob {desc.digest}").close()

    def push_manifest(self, ref: Reference, media_type: str, data: bytes) -> Descriptor:
        """PUT a manifest as *ref*'s tag (or digest); return its descriptor."""
        desc = Descriptor(media_type, sha256_digest(data), len(data))
        self._request(ref, "PUT", f"manifests/{ref.reference}",
                      {"Content-Type": media_type}, body=data, body_size=len(data),
                      push=True, what=f"manifest for {ref}").close()
        return desc

    # ------------------------------------------------------------------
    # Login

    def check_login(self, host: str, credentials: Credentials) -> None:
        """Verify *credentials* against *host* (``registry login``)."""
        ref = Reference(host, "capsa-login-check", "latest")
        # A client of its own: nothing cached from earlier requests counts.
        probe = RegistryClient(self.transport, CredentialStore(explicit=credentials),
                               self.config, no_https=self.no_https)
        resp = probe._send_authed(ref, Request("GET", f"{self._base(ref)}/v2/"), "",
                                  login=True)
        resp.close()
        if resp.status == 401:
            raise AuthError(f"login to {host} failed: the registry refused the credentials")
        if resp.status != 200:
            raise RegistryError(f"login to {host} failed: HTTP {resp.status} {resp.reason}")

    # ------------------------------------------------------------------
    # HTTP plumbing

    def scheme_for(self, host: str) -> str:
        return "http" if self.no_https or self.config.is_insecure(host) else "https"

    def _base(self, ref: Reference) -> str:
        return f"{self.scheme_for(ref.registry)}://{ref.api_host}"

    def _request(self, ref: Reference, method: str, path: str | None,
                 headers: Mapping[str, str], *, body: BinaryIO | bytes | None = None,
                 body_size: int | None = None, push: bool = False, url: str | None = None,
                 what: str = "") -> Response:
        """Send with auth and redirects; non-2xx statuses become errors."""
        if url is None:
            url = f"{self._base(ref)}/v2/{ref.repository}/{path}"
        actions = "pull,push" if push else "pull"
        scope = f"repository:{ref.repository}:{actions}"
        request = Request(method, url, dict(headers), body, body_size)
        # Reads are idempotent: retry them on server errors and lost
        # connections.  Writes are sent once.
        tries = self.retries + 1 if method in ("GET", "HEAD") else 1
        for attempt in range(tries):
            try:
                resp = self._send_authed(ref, request, scope)
                resp = self._follow_redirects(resp, request)
            except ConnectionLost:
                if attempt + 1 == tries:
                    raise
                self._sleep(attempt)
                continue
            if 200 <= resp.status < 300:
                return resp
            if resp.status not in _RETRY_STATUSES or attempt + 1 == tries:
                break
            resp.close()
            log.debug("%s %s: HTTP %d, retrying", method, url, resp.status)
            self._sleep(attempt)
        raise _status_error(resp, ref, what or url, self.credentials.lookup(ref.registry))

    def _sleep(self, attempt: int) -> None:
        if self.retry_delay > 0:
            time.sleep(self.retry_delay * (2 ** attempt))

    def _send_authed(self, ref: Reference, request: Request, scope: str,
                     login: bool = False) -> Response:
        host = ref.registry
        creds = self.credentials.lookup(host)
        resp = self.transport.send(self._with_auth(request, host, scope, creds))
        if resp.status != 401:
            return resp
        challenges = auth.parse_challenges(resp.headers.get("www-authenticate", ""))
        resp.close()
        challenge = auth.pick_challenge(challenges)
        if challenge is None:
            return resp
        self._auth.remember(host, challenge)
        if challenge.scheme == "bearer":
            self._fetch_token(host, challenge, scope, creds, login)
        elif creds is None:
            return resp
        _rewind(request.body)
        return self.transport.send(self._with_auth(request, host, scope, creds))

    def _with_auth(self, request: Request, host: str, scope: str,
                   creds: Credentials | None) -> Request:
        value = self._auth.header(host, scope, creds)
        if value is None:
            return request
        return Request(request.method, request.url, {**request.headers, "Authorization": value},
                       request.body, request.body_size)

    def _fetch_token(self, host: str, challenge: auth.Challenge, scope: str,
                     creds: Credentials | None, login: bool) -> None:
        request = auth.token_request(challenge, [scope] if scope else [], creds)
        resp = self.transport.send(request)
        try:
            body = _read_limited(resp, 1 << 20, "token response")
        finally:
            resp.close()
        if resp.status in (401, 403) and creds is None:
            raise AuthError(_login_hint(host))
        if resp.status in (401, 403) and login:
            raise AuthError(f"login to {host} failed: the registry refused the credentials")
        token = auth.parse_token_response(resp.status, body, challenge.get("realm"))
        self._auth.store_token(host, scope, token)

    def _follow_redirects(self, resp: Response, request: Request) -> Response:
        hops = 0
        while resp.status in _REDIRECTS and request.method in ("GET", "HEAD"):
            location = resp.headers.get("location")
            resp.close()
            if not location or hops >= _MAX_REDIRECTS:
                raise RegistryError(f"too many or broken redirects from {request.url}")
            hops += 1
            target = _join_url(request.url, location)
            headers = dict(request.headers)
            if Request("GET", target).host != request.host:
                # Never hand registry credentials to a blob store elsewhere.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            request = Request(request.method, target, headers)
            resp = self.transport.send(request)
        return resp


# --------------------------------------------------------------------------
# Helpers


def _join_url(base: str, location: str) -> str:
    import urllib.parse

    return urllib.parse.urljoin(base, location)


def _rewind(body: object) -> None:
    seek = getattr(body, "seek", None)
    if seek is not None and not isinstance(body, VerifyingReader):
        seek(0)


def _discard(out: BinaryIO) -> bool:
    """Empty *out*; ``False`` when it can not be (a pipe)."""
    try:
        out.seek(0)
        out.truncate()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _read_limited(resp: Response, limit: int, what: str) -> bytes:
    data = resp.read(limit + 1)
    if len(data) > limit:
        resp.close()
        raise FormatError(f"{what} is larger than {limit} bytes")
    rest = resp.read()
    if rest:
        raise FormatError(f"{what} is larger than {limit} bytes")
    return data


def _check_length(resp: Response, desc: Descriptor) -> None:
    length = resp.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != desc.size:
        raise DigestMismatchError(
            f"blob {desc.digest} is {length} bytes on the registry, expected {desc.size}")


def _copy_verified(resp: Response, desc: Descriptor, out: BinaryIO,
                   progress: Progress | None) -> None:
    reader = VerifyingReader(resp, desc.digest, desc.size)  # type: ignore[arg-type]
    while True:
        chunk = reader.read(_CHUNK)
        if not chunk:
            return
        out.write(chunk)
        if progress is not None:
            progress(len(chunk))


def _error_detail(resp: Response) -> str:
    """The first message of a distribution error body, if any."""
    try:
        body = resp.read(64 << 10)
        errors = load_object(body, "error body").get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError, CapsaError):
        return ""
    finally:
        resp.close()


def _login_hint(host: str) -> str:
    return (f"{host} requires authentication: log in with "
            f"'capsa registry login docker://{host}' or use --docker-login")


def _status_error(resp: Response, ref: Reference, what: str,
                  creds: Credentials | None) -> CapsaError:
    status = resp.status
    detail = _error_detail(resp)
    suffix = f" ({detail})" if detail else ""
    if status == 404:
        return NotFoundError(f"{what} not found{suffix}")
    if status == 401:
        if creds is None:
            return AuthError(f"{what}: {_login_hint(ref.registry)}")
        return AuthError(f"{what}: {ref.registry} refused the credentials{suffix}")
    if status == 403:
        return AuthError(f"{what}: access denied by {ref.registry}{suffix}")
    if status == 429:
        retry = resp.headers.get("retry-after")
        when = f", retry after {retry} s" if retry else ""
        return RegistryError(f"{ref.registry} rate limit reached{when}; logging in "
                             f"(capsa registry login) may raise the limit")
    return RegistryError(f"{what}: {ref.registry} answered HTTP {status} {resp.reason}{suffix}")


def _best_error(ref: Reference, candidates: list[Reference],
                errors: list[CapsaError]) -> CapsaError:
    if len(candidates) <= 1 and errors:
        return errors[-1]
    if errors and not all(isinstance(e, NotFoundError) for e in errors):
        return next(e for e in errors if not isinstance(e, NotFoundError))
    tried = ", ".join(c.registry for c in candidates)
    return NotFoundError(f"image {ref.repository}:{ref.reference} not found in the "
                         f"search registries ({tried})")
