"""Registry credentials: explicit ones (``--docker-login``,
``APPTAINER_DOCKER_USERNAME``/``APPTAINER_DOCKER_PASSWORD``, handed in by
the CLI: this module never reads the environment) and Docker-style auth
files (``--authfile``, ``~/.apptainer/docker-config.json``, then
``~/.docker/config.json``).

Auth files are JSON ``{"auths": {"HOST": {"auth": base64("user:pass")}}}``;
keys may be URLs (``https://index.docker.io/v1/``) and are matched by
host.  Docker credential helpers named by ``credHelpers``/``credsStore``
are asked (``docker-credential-NAME get``, through :mod:`capsa.proc`) when
the file has no usable entry.  Files are written atomically with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capsa import jsondoc, report
from capsa.errors import FormatError, NotFoundError, ToolError

if TYPE_CHECKING:
    from capsa.proc import Runner

log = report.getLogger("capsa.registry")

# The key Docker (and Apptainer) use for Docker Hub in auth files.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and a password (or token)."""

    username: str
    password: str = field(repr=False)


def apptainer_auth_file(home: Path) -> Path:
    return home / ".apptainer" / "docker-config.json"


def docker_auth_file(home: Path) -> Path:
    return home / ".docker" / "config.json"


def auth_key_host(key: str) -> str:
    """The host an auth-file key is for (``https://index.docker.io/v1/`` ->
    ``docker.io``)."""
    text = key.strip()
    if "://" in text:
        text = urllib.parse.urlsplit(text).netloc
    host = text.split("/", 1)[0].lower()
    return "docker.io" if host in _HUB_HOSTS else host


def storage_key(host: str) -> str:
    """The key to write for *host* (Docker Hub keeps its historical URL)."""
    return DOCKER_HUB_AUTH_KEY if auth_key_host(host) == "docker.io" else host


class AuthFile:
    """One Docker-style auth file; other keys in it are kept as they are."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise FormatError(f"cannot read auth file {self.path}: {err.strerror}") from err
        doc = jsondoc.load(text, f"auth file {self.path}") if text.strip() else {}
        if not isinstance(doc, dict):
            raise FormatError(f"auth file {self.path} is not a JSON object")
        return doc

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        auths = self.load().get("auths")
        if isinstance(auths, dict):
            for key, entry in auths.items():
                if isinstance(entry, dict):
                    yield key, entry

    def hosts(self) -> list[str]:
        return [auth_key_host(key) for key, _ in self.entries()]

    def lookup(self, host: str, runner: Runner | None = None) -> Credentials | None:
        """Credentials for *host*: a ``credHelpers`` helper for it, else the
        ``auths`` entry, else the ``credsStore`` helper."""
        doc = self.load()
        wanted = auth_key_host(host)
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if auth_key_host(key) == wanted and isinstance(helper, str) and helper:
                    return helper_get(helper, key, runner)
        for key, entry in self.entries():
            if auth_key_host(key) == wanted:
                creds = _decode_entry(entry, self.path, key)
                if creds is not None:
                    return creds
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            return helper_get(store, storage_key(host), runner)
        return None

    def store(self, host: str, credentials: Credentials) -> None:
        doc = self.load()
        auths = doc.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise FormatError(f"auth file {self.path}: \"auths\" is not an object")
        for key in [k for k in auths if auth_key_host(k) == auth_key_host(host)]:
            del auths[key]
        raw = f"{credentials.username}:{credentials.password}".encode()
        auths[storage_key(host)] = {"auth": base64.b64encode(raw).decode("ascii")}
        self._write(doc)

    def remove(self, host: str) -> None:
        """Forget *host*; :class:`NotFoundError` when it was not there."""
        doc = self.load()
        auths = doc.get("auths")
        keys = [k for k in auths if auth_key_host(k) == auth_key_host(host)] \
            if isinstance(auths, dict) else []
        if not keys or not isinstance(auths, dict):
            raise NotFoundError(f'"{host}" is not logged in')
        for key in keys:
            del auths[key]
        self._write(doc)

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o600)
                json.dump(doc, out, indent="\t")
                out.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def helper_get(helper: str, server: str, runner: Runner | None = None) -> Credentials | None:
    """Ask ``docker-credential-<helper>`` for *server*'s credentials.

    A missing helper or one that fails is a warning, not an error: public
    images still pull anonymously.
    """
    from capsa.proc import DEFAULT_RUNNER

    program = f"docker-credential-{helper}"
    try:
        done = (runner or DEFAULT_RUNNER).run([program, "get"], input=server.encode(),
                                              check=False)
    except ToolError as err:
        log.warning("credential helper %s: %s", program, err)
        return None
    if done.returncode != 0:
        if b"credentials not found" not in done.stdout + done.stderr:
            log.warning("credential helper %s failed for %s", program, server)
        return None
    try:
        doc = jsondoc.load(done.stdout, f"the answer of {program}")
        username, secret = doc["Username"], doc["Secret"]
    except (FormatError, KeyError, TypeError):
        log.warning("credential helper %s sent an unreadable answer", program)
        return None
    if not isinstance(username, str) or not isinstance(secret, str) or not username:
        return None
    if username == "<token>":
        log.debug("credential helper %s: identity tokens are not supported", program)
        return None
    return Credentials(username, secret)


def _decode_entry(entry: dict[str, Any], path: Path, key: str) -> Credentials | None:
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str) and user:
        return Credentials(user, password)
    auth = entry.get("auth")
    if not isinstance(auth, str) or not auth:
        if entry.get("identitytoken"):
            log.debug("auth file %s: identity tokens for %s are not supported", path, key)
        return None
    try:
        user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise FormatError(f"auth file {path}: the entry for {key} is not base64") from err
    if not sep:
        raise FormatError(f"auth file {path}: the entry for {key} has no ':'")
    return Credentials(user, password)


@dataclass(frozen=True, slots=True)
class CredentialStore:
    """Where credentials come from, in order of precedence.

    *explicit* (from ``--docker-login`` or the environment) applies to every
    host; otherwise *authfile* alone when given, else the default files
    under *home*.
    """

    explicit: Credentials | None = None
    authfile: Path | None = None
    home: Path | None = None
    runner: Runner | None = None

    def files(self) -> Sequence[Path]:
        if self.authfile is not None:
            return [self.authfile]
        if self.home is None:
            return []
        return [apptainer_auth_file(self.home), docker_auth_file(self.home)]

    def write_file(self) -> Path:
        """The file ``registry login`` writes to."""
        if self.authfile is not None:
            return self.authfile
        if self.home is None:
            raise NotFoundError("no home directory to store registry credentials in")
        return apptainer_auth_file(self.home)

    def lookup(self, host: str) -> Credentials | None:
        if self.explicit is not None:
            return self.explicit
        for path in self.files():
            creds = AuthFile(path).lookup(host, self.runner)
            if creds is not None:
                log.debug("using credentials for %s from %s", host, path)
                return creds
        return None
