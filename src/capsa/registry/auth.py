"""Registry authentication without I/O.

A registry answers 401 with ``WWW-Authenticate`` challenges.  This module
parses them (:func:`parse_challenges`), builds the token request for a
``Bearer`` challenge (:func:`token_request`; anonymous when we have no
credentials, as Docker Hub allows for public images), reads the token
server's answer (:func:`parse_token_response`) and keeps what was learned
per host and scope (:class:`AuthCache`).  The client does the sending.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

from capsa.errors import AuthError, FormatError, RegistryError
from capsa.jsondoc import load_object
from capsa.registry.credentials import Credentials
from capsa.registry.transport import Request

_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_WS = re.compile(r"[ \t]*")
# Refresh a little before the server's expiry.
_EXPIRY_MARGIN = 30.0
_DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lower case) and params."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str = "") -> str:
        for name, value in self.params:
            if name == key:
                return value
        return default


class _Scanner:
    """A cursor over a header value (RFC 7235 grammar, leniently)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self, chars: str = " \t") -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.pos)
        if found is None or not found.group(0):
            return None
        self.pos = found.end()
        return found.group(0)

    def quoted(self) -> str:
        """A quoted string (the opening quote is current)."""
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise ValueError("unterminated quoted string")


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in a ``WWW-Authenticate`` value; malformed parts are
    dropped rather than fatal (servers are sloppy)."""
    scan = _Scanner(header)
    found: list[Challenge] = []
    while True:
        scan.skip(" \t,")
        scheme = scan.match(_TOKEN)
        if scheme is None:
            return found
        token68 = _token68(scan)
        if token68 is not None:
            found.append(Challenge(scheme.lower(), (("token68", token68),)))
            continue
        try:
            params = _parse_params(scan)
        except ValueError:
            found.append(Challenge(scheme.lower()))
            return found
        found.append(Challenge(scheme.lower(), tuple(params)))


def _token68(scan: _Scanner) -> str | None:
    """A bare ``token68`` credential (``Negotiate abc==``), if that is next."""
    start = scan.pos
    scan.skip()
    value = scan.match(_TOKEN68)
    if value is not None:
        scan.skip()
        if scan.peek() in ("", ","):
            return value
    scan.pos = start
    return None


def _parse_params(scan: _Scanner) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    while True:
        scan.skip()
        start = scan.pos
        name = scan.match(_TOKEN)
        if name is None:
            return params
        scan.skip()
        if scan.peek() != "=":
            scan.pos = start  # the next challenge's scheme
            return params
        scan.pos += 1
        scan.skip()
        value = scan.quoted() if scan.peek() == '"' else scan.match(_TOKEN68) or ""
        params.append((name.lower(), value))
        scan.skip()
        if scan.peek() == ",":
            scan.pos += 1


def basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """Bearer beats Basic; other schemes are not spoken."""
    by_scheme = {c.scheme: c for c in challenges}
    return by_scheme.get("bearer") or by_scheme.get("basic")


def token_request(challenge: Challenge, scopes: Iterable[str],
                  credentials: Credentials | None) -> Request:
    """The GET to the token server that a ``Bearer`` challenge asks for."""
    realm = challenge.get("realm")
    parts = urllib.parse.urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"registry sent an unusable token realm: {realm!r}")
    query = urllib.parse.parse_qsl(parts.query)
    if challenge.get("service"):
        query.append(("service", challenge.get("service")))
    wanted = list(dict.fromkeys([*scopes, *challenge.get("scope").split()]))
    query.extend(("scope", scope) for scope in wanted if scope)
    url = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(query), ""))
    headers = {"Accept": "application/json"}
    if credentials is not None:
        headers["Authorization"] = basic_header(credentials)
    return Request("GET", url, headers)


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - _EXPIRY_MARGIN


def parse_token_response(status: int, body: bytes, realm: str,
                         now: float | None = None) -> Token:
    """The token in a token server's answer (``token`` or ``access_token``)."""
    if status == 401 or status == 403:
        raise AuthError(f"the token server at {realm} refused the credentials "
                        f"(HTTP {status})")
    if status != 200:
        raise RegistryError(f"the token server at {realm} answered HTTP {status}")
    try:
        doc = load_object(body, "token answer")
        value = doc.get("token") or doc.get("access_token")
        lifetime = float(doc.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
    except (FormatError, ValueError, AttributeError, TypeError) as err:
        raise RegistryError(f"the token server at {realm} sent an unreadable answer") from err
    if not isinstance(value, str) or not value:
        raise RegistryError(f"the token server at {realm} sent no token")
    start = time.time() if now is None else now
    return Token(value, start + max(lifetime, _DEFAULT_TOKEN_LIFETIME))


@dataclass
class AuthCache:
    """What each host wants: its challenge, and bearer tokens per scope.

    Thread-safe: parallel blob downloads share one cache.
    """

    challenges: dict[str, Challenge] = field(default_factory=dict)
    tokens: dict[tuple[str, str], Token] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def remember(self, host: str, challenge: Challenge) -> None:
        with self._lock:
            self.challenges[host] = challenge

    def challenge(self, host: str) -> Challenge | None:
        with self._lock:
            return self.challenges.get(host)

    def store_token(self, host: str, scope: str, token: Token) -> None:
        with self._lock:
            self.tokens[(host, scope)] = token

    def header(self, host: str, scope: str, credentials: Credentials | None,
               now: float | None = None) -> str | None:
        """The Authorization value to send now, or ``None``."""
        with self._lock:
            challenge = self.challenges.get(host)
            token = self.tokens.get((host, scope))
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_header(credentials) if credentials else None
        if token is not None and token.fresh(time.time() if now is None else now):
            return f"Bearer {token.value}"
        return None
