"""Local OCI registries for the tests: Debian's ``docker-registry`` (CNCF
distribution) on 127.0.0.1, started once per session.

Fixtures (import them into a ``tests/<dir>/conftest.py`` with
``from support.registry import plain_registry, auth_registry, token_registry,
tls_registry, hostile_registry``):

- ``plain_registry``: anonymous, plain HTTP.
- ``auth_registry``: htpasswd (bcrypt) basic auth; ``.username``/``.password``.
- ``token_registry``: bearer-token auth through a token server we run here
  (RS256 JWTs with an ``x5c`` header, signed by a self-signed certificate).
  Anonymous clients get ``pull`` on repositories under ``public/`` (Docker
  Hub's anonymous token flow); with ``.username``/``.password`` they get
  what they ask for; wrong credentials get 401.
- ``tls_registry``: anonymous, HTTPS with a certificate for 127.0.0.1 signed
  by a test CA (``.ca_file``; give capsa ``SSL_CERT_FILE=<ca_file>``).
- ``hostile_registry``: a tiny Python server that serves whatever it is
  given (wrong digests, short blobs, odd media types): no validation at all.

Every fixture returns a :class:`Registry` (``hostile_registry`` a
:class:`HostileRegistry` with the same pushing methods):

- ``.host`` (``"127.0.0.1:PORT"``), ``.url`` (``"http://127.0.0.1:PORT"``),
  ``.username``, ``.password`` (``None`` when anonymous), ``.creds``
  (``"user:pass"`` or ``None``);
- ``.ref("name:tag")`` -> ``"docker://127.0.0.1:PORT/name:tag"``;
- ``.push_oci_layout(layout_dir, "name:tag", src_tag=None)``: copy an OCI
  layout (all its platforms) in with ``skopeo``;
- ``.push_raw(name, manifest_bytes, blobs, reference="latest",
  media_type=None) -> manifest digest``: upload blobs (``{digest: bytes}``
  or a list of bytes) and a manifest byte for byte.  A real registry checks
  blob digests and refuses unknown manifest types; the hostile one does not.

All but ``tls_registry`` are plain HTTP: pass ``--no-https`` (or
``APPTAINER_NOHTTPS=1``) to capsa when pulling from them.  The certificates
and the token server live in :mod:`support.registry_auth`; the tiny OCI
images for the registry's own tests in :mod:`support.tinyoci`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from support.registry_auth import (
    ISSUER,
    SERVICE,
    QuietServer,
    TokenServer,
    write_tls_files,
)

USERNAME = "capsa"
PASSWORD = "s3cret-p4ss"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Pushing content: shared by the real and the hostile registry.


class _Pusher:
    """Blob and manifest upload over plain HTTP, with basic or token auth."""

    host: str
    username: str | None
    password: str | None
    ca_file: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://{self.host}"

    @property
    def creds(self) -> str | None:
        if self.username is None:
            return None
        return f"{self.username}:{self.password}"

    def ref(self, name: str) -> str:
        """``docker://HOST/name[:tag]`` for this registry."""
        return f"docker://{self.host}/{name}"

    def push_raw(
        self,
        name: str,
        manifest: bytes,
        blobs: Mapping[str, bytes] | Sequence[bytes] = (),
        reference: str = "latest",
        media_type: str | None = None,
    ) -> str:
        """Upload *blobs* and *manifest* as ``name:reference``; return the
        manifest's digest."""
        items = blobs.items() if isinstance(blobs, Mapping) else (
            (_sha256(b), b) for b in blobs)
        for digest, data in items:
            self.put_blob(name, digest, data)
        if media_type is None:
            media_type = json.loads(manifest).get("mediaType", "")
        self._request("PUT", f"/v2/{name}/manifests/{reference}", name, manifest,
                      {"Content-Type": media_type})
        return _sha256(manifest)

    def put_blob(self, name: str, digest: str, data: bytes) -> None:
        start = self._request("POST", f"/v2/{name}/blobs/uploads/", name, b"")
        location = start.headers["Location"]
        parts = urllib.parse.urlsplit(location)
        sep = "&" if parts.query else "?"
        path = f"{parts.path}{'?' + parts.query if parts.query else ''}{sep}digest={digest}"
        self._request("PUT", path, name, data,
                      {"Content-Type": "application/octet-stream"})

    # -- HTTP with the authentication the registry asks for

    def _request(self, method: str, path: str, name: str, body: bytes,
                 headers: Mapping[str, str] | None = None) -> Any:
        hdrs = dict(headers or {})
        auth = self._auth_header(name)
        if auth:
            hdrs["Authorization"] = auth
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=hdrs)
        try:
            return urllib.request.urlopen(req, timeout=30, context=_tls_context(self.ca_file))
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise AssertionError(f"{method} {path}: {err.code} {detail}") from err

    def _auth_header(self, name: str) -> str | None:
        del name
        if self.username is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


# --------------------------------------------------------------------------
# The real registry.


@dataclass
class Registry(_Pusher):
    """A running ``docker-registry`` (see the module docstring)."""

    host: str
    root: Path
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    ca_file: Path | None = None

    def push_oci_layout(self, layout_dir: str | Path, name: str,
                        src_tag: str | None = None) -> None:
        """Copy the OCI layout at *layout_dir* (tag *src_tag*, default the
        tag of *name*) to ``HOST/name`` with skopeo, every platform included."""
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
        source = f"oci:{layout_dir}:{src_tag or tag}"
        argv = ["skopeo", "--insecure-policy", "copy", "--all", "--quiet",
                "--dest-tls-verify=false"]
        if self.creds:
            argv += ["--dest-creds", self.creds]
        argv += [source, f"docker://{self.host}/{name}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed:\n{proc.stderr}")

    def _auth_header(self, name: str) -> str | None:
        if self.token_server is None:
            return super()._auth_header(name)
        token = self.token_server.issue(self.username, f"repository:{name}:pull,push")
        return f"Bearer {token}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.token_server is not None:
            self.token_server.stop()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else None


def _registry_config(root: Path, port: int, auth: str, tls: bool = False) -> str:
    tls_lines = ["  tls:", f"    certificate: {root / 'tls.crt'}",
                 f"    key: {root / 'tls.key'}"] if tls else []
    return "\n".join([
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {secrets.token_hex(16)}",
        *tls_lines,
        auth,
        "",
    ])


def _wait_until_up(host: str, proc: subprocess.Popen[bytes], log: Path,
                   ca_file: Path | None = None) -> None:
    deadline = time.monotonic() + 30
    scheme = "https" if ca_file else "http"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()}")
        try:
            urllib.request.urlopen(f"{scheme}://{host}/v2/", timeout=2,
                                   context=_tls_context(ca_file))
            return
        except urllib.error.HTTPError:
            return  # 401 is an answer too
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"docker-registry on {host} did not answer: {log.read_text()}")


def start_registry(auth: str = "", *, username: str | None = None,
                   password: str | None = None,
                   token_server: TokenServer | None = None,
                   root: Path | None = None, tls: bool = False) -> Registry:
    """Start ``docker-registry`` with the *auth* YAML section (may be empty);
    *tls*: HTTPS with a certificate for 127.0.0.1 from a CA in ``.ca_file``."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    root = root or Path(tempfile.mkdtemp(prefix="capsa-registry-"))
    ca_file = write_tls_files(root) if tls else None
    port = free_port()
    config = root / "config.yml"
    config.write_text(_registry_config(root, port, auth, tls))
    log = root / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    _wait_until_up(host, proc, log, ca_file)
    return Registry(host, root, username, password, token_server, proc, ca_file)


def start_auth_registry() -> Registry:
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd (apache2-utils) is not installed")
    root = Path(tempfile.mkdtemp(prefix="capsa-registry-"))
    line = subprocess.run(["htpasswd", "-Bbn", USERNAME, PASSWORD], check=True,
                          capture_output=True, text=True).stdout
    (root / "htpasswd").write_text(line.strip() + "\n")
    auth = f"auth:\n  htpasswd:\n    realm: capsa-basic\n    path: {root / 'htpasswd'}"
    return start_registry(auth, username=USERNAME, password=PASSWORD, root=root)


def start_token_registry() -> Registry:
    root = Path(tempfile.mkdtemp(prefix="capsa-registry-"))
    server = TokenServer(root, {USERNAME: PASSWORD})
    auth = "\n".join([
        "auth:",
        "  token:",
        f"    realm: {server.realm}",
        f"    service: {SERVICE}",
        f"    issuer: {ISSUER}",
        f"    rootcertbundle: {server.cert_path}",
    ])
    return start_registry(auth, username=USERNAME, password=PASSWORD,
                          token_server=server, root=root)


def start_tls_registry() -> Registry:
    return start_registry(tls=True)


# --------------------------------------------------------------------------
# The hostile registry: serves what it is given, checks nothing.


class HostileRegistry(_Pusher):
    """An in-process "registry" that stores anything ``push_raw`` gives it.

    ``blobs`` maps ``(name, digest)`` to bytes, ``manifests`` maps ``(name,
    reference)`` to ``(media_type, bytes)`` (tags and digests both); tests may
    also edit them directly.  ``requests`` logs ``(method, path)``, ``peers``
    the client port of each (to see connections being reused).
    """

    def __init__(self) -> None:
        self.username: str | None = None
        self.password: str | None = None
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.peers: list[int] = []  # client port of each request: connection reuse
        self._uploads: dict[str, bytearray] = {}
        self._httpd = QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"

    def put_blob(self, name: str, digest: str, data: bytes) -> None:
        self.blobs[(name, digest)] = data

    def push_raw(
        self,
        name: str,
        manifest: bytes,
        blobs: Mapping[str, bytes] | Sequence[bytes] = (),
        reference: str = "latest",
        media_type: str | None = None,
    ) -> str:
        items = blobs.items() if isinstance(blobs, Mapping) else (
            (_sha256(b), b) for b in blobs)
        for digest, data in items:
            self.put_blob(name, digest, data)
        if media_type is None:
            media_type = json.loads(manifest).get("mediaType", "")
        digest = _sha256(manifest)
        self.manifests[(name, reference)] = (media_type, manifest)
        self.manifests[(name, digest)] = (media_type, manifest)
        return digest

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_GET(self) -> None:
                self._serve(body=True)

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def _serve(self, body: bool) -> None:
                reg.requests.append((self.command, self.path))
                reg.peers.append(self.client_address[1])
                path = urllib.parse.urlsplit(self.path).path
                if path == "/v2/":
                    return self._send(200, "application/json", b"{}", body)
                match = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
                if match is None:
                    return self._send(404, "application/json", b"{}", body)
                name, kind, ref = match.groups()
                if kind == "manifests" and (name, ref) in reg.manifests:
                    media_type, data = reg.manifests[(name, ref)]
                    return self._send(200, media_type, data, body, _sha256(data))
                if kind == "blobs" and (name, ref) in reg.blobs:
                    return self._send(200, "application/octet-stream",
                                      reg.blobs[(name, ref)], body)
                code = "MANIFEST_UNKNOWN" if kind == "manifests" else "BLOB_UNKNOWN"
                err = json.dumps({"errors": [{"code": code, "message": "unknown"}]})
                return self._send(404, "application/json", err.encode(), body)

            def _send(self, status: int, ctype: str, data: bytes, body: bool,
                      digest: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler


# --------------------------------------------------------------------------
# Fixtures.


@contextlib.contextmanager
def _running(registry: Registry | HostileRegistry) -> Iterator[Any]:
    try:
        yield registry
    finally:
        registry.stop()
        root = getattr(registry, "root", None)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def plain_registry() -> Iterator[Registry]:
    """Anonymous, plain-HTTP docker-registry on 127.0.0.1."""
    with _running(start_registry()) as registry:
        yield registry


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    """docker-registry with htpasswd basic auth (``.username``/``.password``)."""
    with _running(start_auth_registry()) as registry:
        yield registry


@pytest.fixture(scope="session")
def token_registry() -> Iterator[Registry]:
    """docker-registry behind a token server (anonymous pull on ``public/*``)."""
    with _running(start_token_registry()) as registry:
        yield registry


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[Registry]:
    """Anonymous docker-registry over HTTPS; trust ``.ca_file`` (for capsa:
    ``SSL_CERT_FILE=<ca_file>``)."""
    with _running(start_tls_registry()) as registry:
        yield registry


@pytest.fixture(scope="session")
def hostile_registry() -> Iterator[HostileRegistry]:
    """A server that serves whatever ``push_raw`` stored, unchecked."""
    with _running(HostileRegistry()) as registry:
        yield registry
