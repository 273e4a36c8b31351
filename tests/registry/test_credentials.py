"""Docker-style auth files and where credentials come from."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from capsa.errors import FormatError, NotFoundError, ToolError
from capsa.proc import Completed
from capsa.registry.credentials import (
    DOCKER_HUB_AUTH_KEY,
    AuthFile,
    Credentials,
    CredentialStore,
    auth_key_host,
    storage_key,
)


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("key", "host"), [
    ("https://index.docker.io/v1/", "docker.io"),
    ("docker.io", "docker.io"),
    ("registry-1.docker.io", "docker.io"),
    ("http://127.0.0.1:5000", "127.0.0.1:5000"),
    ("Quay.IO/org", "quay.io"),
])
def test_auth_key_host(key: str, host: str) -> None:
    assert auth_key_host(key) == host


def test_storage_key() -> None:
    assert storage_key("docker.io") == DOCKER_HUB_AUTH_KEY
    assert storage_key("registry-1.docker.io") == DOCKER_HUB_AUTH_KEY
    assert storage_key("127.0.0.1:5000") == "127.0.0.1:5000"


def test_lookup_forms(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": _auth("hub", "pw:with:colons")},
        "quay.io": {"username": "q", "password": "qp"},
        "token.only": {"identitytoken": "xyz"},
        "weird": "not an object",
    }, "credsStore": "desktop"}))
    file = AuthFile(path)
    assert file.lookup("docker.io") == Credentials("hub", "pw:with:colons")
    assert file.lookup("quay.io") == Credentials("q", "qp")
    assert file.lookup("token.only") is None
    assert file.lookup("other") is None
    assert sorted(file.hosts()) == ["docker.io", "quay.io", "token.only"]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"auths": {"h": {"auth": "!!!"}}}', "not base64"),
    ('{"auths": {"h": {"auth": "' + base64.b64encode(b"nocolon").decode() + '"}}}', "no ':'"),
])
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(FormatError, match=message):
        AuthFile(path).lookup("h")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert AuthFile(tmp_path / "none.json").lookup("h") is None
    (tmp_path / "empty.json").write_text("")
    assert AuthFile(tmp_path / "empty.json").lookup("h") is None


def test_store_is_private_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "docker-config.json"
    file = AuthFile(path)
    file.store("127.0.0.1:5000", Credentials("u", "p"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    doc["HttpHeaders"] = {"X": "y"}
    path.write_text(json.dumps(doc))
    file.store("docker.io", Credentials("hub", "h"))
    file.store("127.0.0.1:5000", Credentials("u2", "p2"))
    doc = json.loads(path.read_text())
    assert doc["HttpHeaders"] == {"X": "y"}
    assert set(doc["auths"]) == {"127.0.0.1:5000", DOCKER_HUB_AUTH_KEY}
    assert file.lookup("127.0.0.1:5000") == Credentials("u2", "p2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["docker-config.json"]


def test_remove(tmp_path: Path) -> None:
    file = AuthFile(tmp_path / "c.json")
    file.store("a.test", Credentials("u", "p"))
    file.store("b.test", Credentials("u", "p"))
    file.remove("a.test")
    assert file.hosts() == ["b.test"]
    with pytest.raises(NotFoundError, match=r'"a\.test" is not logged in'):
        file.remove("a.test")


def test_store_precedence(tmp_path: Path) -> None:
    home = tmp_path
    AuthFile(home / ".docker" / "config.json").store("h", Credentials("docker", "d"))
    store = CredentialStore(home=home)
    assert store.lookup("h") == Credentials("docker", "d")
    AuthFile(home / ".apptainer" / "docker-config.json").store("h", Credentials("app", "a"))
    assert store.lookup("h") == Credentials("app", "a")
    assert store.write_file() == home / ".apptainer" / "docker-config.json"
    explicit = CredentialStore(Credentials("env", "e"), home=home)
    assert explicit.lookup("h") == Credentials("env", "e")
    assert explicit.lookup("anything") == Credentials("env", "e")
    only = CredentialStore(authfile=tmp_path / "other.json", home=home)
    assert only.lookup("h") is None
    assert only.write_file() == tmp_path / "other.json"
    assert CredentialStore().lookup("h") is None
    with pytest.raises(NotFoundError):
        CredentialStore().write_file()


def test_password_not_in_repr() -> None:
    assert "secret" not in repr(Credentials("u", "secret"))


class FakeHelper:
    """A Runner standing in for docker-credential-* programs."""

    def __init__(self, answers: dict[str, tuple[int, bytes]]) -> None:
        self.answers = answers
        self.calls: list[tuple[tuple[str, ...], bytes | None]] = []

    def run(self, argv: Sequence[str], *, check: bool = True, capture: bool = True,
            input: bytes | None = None, **kwargs: object) -> Completed:
        del check, capture, kwargs
        self.calls.append((tuple(argv), input))
        if argv[0] == "docker-credential-missing":
            raise ToolError("docker-credential-missing not found in PATH")
        code, out = self.answers.get((input or b"").decode(), (1, b"credentials not found"))
        return Completed(tuple(argv), code, out, b"")


def test_credential_helpers(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "auths": {"file.test": {"auth": _auth("f", "fp")}, "quay.io": {}},
        "credHelpers": {"gcr.test": "gcr", "broken.test": "missing"},
        "credsStore": "desktop",
    }))
    helper = FakeHelper({
        "gcr.test": (0, b'{"ServerURL": "gcr.test", "Username": "g", "Secret": "gs"}'),
        "quay.io": (0, b'{"Username": "q", "Secret": "qs"}'),
        DOCKER_HUB_AUTH_KEY: (0, b'{"Username": "<token>", "Secret": "refresh"}'),
    })
    store = CredentialStore(authfile=path, runner=helper)
    assert store.lookup("gcr.test") == Credentials("g", "gs")
    assert helper.calls[-1] == (("docker-credential-gcr", "get"), b"gcr.test")
    assert store.lookup("file.test") == Credentials("f", "fp")
    assert store.lookup("quay.io") == Credentials("q", "qs")
    assert helper.calls[-1][0] == ("docker-credential-desktop", "get")
    assert store.lookup("docker.io") is None  # identity tokens: not supported
    assert store.lookup("nowhere.test") is None  # "credentials not found"
    assert store.lookup("broken.test") is None  # helper not installed: a warning


def test_helper_garbage(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "x"}))
    helper = FakeHelper({"h": (0, b"garbage")})
    assert AuthFile(path).lookup("h", helper) is None
    helper = FakeHelper({"h": (3, b"boom")})
    assert AuthFile(path).lookup("h", helper) is None
