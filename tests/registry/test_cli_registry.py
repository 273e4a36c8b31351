"""``capsa registry login|logout|list`` as root and as an unprivileged user."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from support.cli import Capsa
from support.registry import Registry


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("fixture", ["auth_registry", "token_registry"])
def test_login_list_logout(any_capsa: Capsa, scratch: Path, fixture: str,
                           request: pytest.FixtureRequest) -> None:
    registry: Registry = request.getfixturevalue(fixture)
    authfile = scratch / "auth.json"
    uri = f"docker://{registry.host}"
    res = any_capsa("registry", "login", "--username", "capsa", "--password",
                    registry.password or "", "--authfile", str(authfile), uri)
    assert res.returncode == 0, res
    assert f"INFO:    Token stored in {authfile}" in res.stderr
    assert _mode(authfile) == 0o600
    assert authfile.stat().st_uid == any_capsa.user.uid
    auths = json.loads(authfile.read_text())["auths"]
    assert list(auths) == [registry.host]
    res = any_capsa("registry", "list", "--authfile", str(authfile), check=True)
    assert res.stdout.splitlines()[0] == ""
    assert res.stdout.splitlines()[1].split() == ["URI", "SECURE?"]
    assert res.stdout.splitlines()[2].split() == [uri, "\u2713"]
    res = any_capsa("registry", "logout", "--authfile", str(authfile), uri, check=True)
    assert "INFO:    Logout succeeded" in res.stderr
    assert json.loads(authfile.read_text())["auths"] == {}
    res = any_capsa("registry", "logout", "--authfile", str(authfile), uri)
    assert res.returncode == 255
    assert f'FATAL:   "{registry.host}" is not logged in' in res.stderr


def test_login_default_file_and_password_stdin(any_capsa: Capsa, auth_registry: Registry,
                                               default_authfile: Path) -> None:
    res = any_capsa("registry", "login", "-u", "capsa", "--password-stdin",
                    f"docker://{auth_registry.host}", input=f"{auth_registry.password}\n")
    assert res.returncode == 0, res
    assert str(default_authfile) in res.stderr
    assert _mode(default_authfile) == 0o600
    assert _mode(default_authfile.parent) & 0o077 == 0
    creds = json.loads(default_authfile.read_text())["auths"][auth_registry.host]["auth"]
    import base64
    assert base64.b64decode(creds).decode() == f"capsa:{auth_registry.password}"
    res = any_capsa("registry", "list", check=True)
    assert f"docker://{auth_registry.host}" in res.stdout


@pytest.mark.parametrize("fixture", ["auth_registry", "token_registry"])
def test_login_wrong_password(any_capsa: Capsa, scratch: Path, fixture: str,
                              request: pytest.FixtureRequest) -> None:
    registry: Registry = request.getfixturevalue(fixture)
    authfile = scratch / "auth.json"
    res = any_capsa("registry", "login", "-u", "capsa", "-p", "wrong", "--authfile",
                    str(authfile), f"docker://{registry.host}")
    assert res.returncode == 255
    assert res.stderr.startswith(f"FATAL:   while login to docker://{registry.host}:")
    assert "refused the credentials" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not authfile.exists()


def test_login_needs_username_and_password(capsa: Capsa, auth_registry: Registry,
                                           scratch: Path) -> None:
    uri = f"docker://{auth_registry.host}"
    res = capsa("registry", "login", "-p", "x", uri)
    assert res.returncode == 255
    assert "Docker/OCI registry requires a username" in res.stderr
    res = capsa("registry", "login", "-u", "capsa", uri, input="")
    assert res.returncode == 255
    assert "a password is required" in res.stderr
    res = capsa("registry", "login", "-u", "capsa", "--authfile", str(scratch / "a.json"),
                uri, env={"APPTAINER_LOGIN_PASSWORD": auth_registry.password or ""})
    assert res.returncode == 0, res


def test_login_unreachable(capsa: Capsa, scratch: Path) -> None:
    from support.registry import free_port

    res = capsa("registry", "login", "-u", "u", "-p", "p", "--authfile",
                str(scratch / "a.json"), f"docker://127.0.0.1:{free_port()}")
    assert res.returncode == 255
    assert "connection refused" in res.stderr


def test_login_bad_uri(capsa: Capsa) -> None:
    res = capsa("registry", "login", "-u", "u", "-p", "p", "library://x")
    assert res.returncode == 255
    assert "docker:// and oras://" in res.stderr


def test_registry_without_command(capsa: Capsa) -> None:
    res = capsa("registry")
    assert res.returncode == 255
    assert "login, logout or list" in res.stderr


def test_list_empty(any_capsa: Capsa, scratch: Path) -> None:
    res = any_capsa("registry", "list", "--authfile", str(scratch / "none.json"), check=True)
    assert res.stdout.split() == ["URI", "SECURE?"]


def test_docker_hub_key(capsa: Capsa, scratch: Path) -> None:
    """Docker Hub credentials are stored under Docker's historical key."""
    from capsa.registry.credentials import AuthFile, Credentials

    authfile = scratch / "hub.json"
    AuthFile(authfile).store("docker.io", Credentials("u", "p"))
    assert list(json.loads(authfile.read_text())["auths"]) == ["https://index.docker.io/v1/"]
    res = capsa("registry", "list", "--authfile", str(authfile), check=True)
    assert "docker://docker.io" in res.stdout
    res = capsa("registry", "logout", "--authfile", str(authfile), "docker://docker.io",
                check=True)
    assert json.loads(authfile.read_text())["auths"] == {}
