"""Certificates and the token server behind the test registries (see
:mod:`support.registry`): a self-signed CA, a server certificate for
127.0.0.1, and a tiny JWT issuer (RS256, ``x5c`` header) for
docker-registry's ``auth.token``."""

from __future__ import annotations

import base64
import datetime
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SERVICE = "capsa-test-registry"
ISSUER = "capsa-test-issuer"


class QuietServer(ThreadingHTTPServer):
    """No tracebacks on stderr when a client hangs up (tests do that)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        del request, client_address


def write_tls_files(root: Path) -> Path:
    """A CA (``ca.pem``, returned) and a server certificate for 127.0.0.1
    signed by it (``tls.crt``, ``tls.key``)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    ca_key, ca_der = _self_signed("capsa-test-ca")
    ca_cert = x509.load_der_x509_certificate(ca_der)
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (root / "tls.crt").write_bytes(cert.public_bytes(pem))
    (root / "tls.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    ca_file = root / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    ca_file.chmod(0o644)
    root.chmod(0o755)  # the unprivileged test user reads ca.pem (SSL_CERT_FILE)
    return ca_file



# --------------------------------------------------------------------------
# The token server.


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues RS256 registry tokens (JWT with ``x5c``) on ``GET /token``.

    ``requests`` records ``(username or None, scopes)`` of every request, so
    tests can count token fetches.
    """

    def __init__(self, root: Path, users: Mapping[str, str]) -> None:
        self.users = dict(users)
        self.requests: list[tuple[str | None, list[str]]] = []
        self._key, cert_der = _self_signed(ISSUER)
        self._x5c = base64.b64encode(cert_der).decode()
        self.cert_path = root / "token-ca.pem"
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        self.cert_path.write_bytes(
            x509.load_der_x509_certificate(cert_der).public_bytes(Encoding.PEM))
        self._httpd = QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.realm = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def issue(self, user: str | None, *scopes: str) -> str:
        """A signed token for *user* (``None``: anonymous) and *scopes*."""
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        claims = {
            "iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now,
            "nbf": now - 10, "exp": now + 600, "jti": uuid.uuid4().hex,
            "access": [a for a in map(self._grant_for(user), scopes) if a],
        }
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(),
                                   hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    @staticmethod
    def _grant_for(user: str | None) -> Any:
        def grant(scope: str) -> dict[str, Any] | None:
            match = re.fullmatch(r"(\w+):([^:]+(?::\d+/[^:]+)?):([\w,*]+)", scope)
            if match is None:
                return None
            kind, name, actions = match.groups()
            wanted = actions.split(",")
            if user is None:  # anonymous: read-only, public/ only
                wanted = [a for a in wanted if a == "pull"] if name.startswith("public/") else []
            return {"type": kind, "name": name, "actions": wanted}
        return grant

    def _authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(allowed, user): no header is anonymous, a bad one is refused."""
        if not header:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        return self.users.get(user) == password, user

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scopes = [s for value in query.get("scope", []) for s in value.split(" ")]
                ok, user = server._authenticate(self.headers.get("Authorization"))
                server.requests.append((user, scopes))
                if not ok:
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                  "message": "bad credentials"}]})
                    return
                token = server.issue(user, *scopes)
                self._reply(200, {"token": token, "access_token": token,
                                  "expires_in": 600})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _self_signed(common_name: str) -> tuple[Any, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(Encoding.DER)
