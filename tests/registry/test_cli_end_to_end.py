"""The registry layer seen through ``capsa pull``: registries.conf mirrors
and search registries, and credentials written by ``capsa registry login``
(root and the unprivileged user; each its own home and auth file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa
from support.registry import Registry
from support.tinyoci import make_layout


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e")
    make_layout(path, "v1", {"bin/hello": b"#!/bin/sh\necho hello\n"})
    return path


def _env(scratch: Path, **extra: str) -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / "cache"), **extra}


def test_docker_hub_mirror_from_registries_conf(any_capsa: Capsa, plain_registry: Registry,
                                                layout: Path, scratch: Path) -> None:
    """A site mirror of Docker Hub: ``docker://NAME`` works without internet."""
    plain_registry.push_oci_layout(layout, "library/mirrored:v1")
    conf = scratch / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "docker.io"\n'
                    f'[[registry.mirror]]\nlocation = "{plain_registry.host}"\n'
                    "insecure = true\n")
    res = any_capsa("pull", str(scratch / "out.sif"), "docker://mirrored:v1",
                    env=_env(scratch, CONTAINERS_REGISTRIES_CONF=str(conf)))
    assert res.returncode == 0, res
    assert (scratch / "out.sif").stat().st_size > 0


def test_search_registries_from_user_registries_conf(any_capsa: Capsa, plain_registry: Registry,
                                                     layout: Path, scratch: Path) -> None:
    """~/.config/containers/registries.conf of the user's real home (where
    containers/image reads it too): written as the user, and removed with the
    directories the test made (a file that was there is put back), so that
    other programs (podman) still find theirs."""
    plain_registry.push_oci_layout(layout, "tools/searched:v1")
    conf = any_capsa.user.home / ".config" / "containers" / "registries.conf"
    saved = conf.read_bytes() if conf.exists() else None
    made = [d for d in (conf.parent.parent, conf.parent) if not d.exists()]
    for directory in made:
        directory.mkdir(mode=0o755)
        any_capsa.user.own(directory)
    try:
        conf.write_text(f'unqualified-search-registries = ["{plain_registry.host}"]\n'
                        f'[[registry]]\nlocation = "{plain_registry.host}"\ninsecure = true\n')
        res = any_capsa("pull", str(scratch / "s.sif"), "docker://tools/searched:v1",
                        env=_env(scratch))
        assert res.returncode == 0, res
    finally:
        if saved is not None:
            conf.write_bytes(saved)
        else:
            conf.unlink(missing_ok=True)
        for directory in reversed(made):
            directory.rmdir()


@pytest.mark.parametrize("fixture", ["auth_registry", "token_registry"])
def test_login_then_pull_then_logout(any_capsa: Capsa, layout: Path, scratch: Path,
                                     default_authfile: Path, fixture: str,
                                     request: pytest.FixtureRequest) -> None:
    registry: Registry = request.getfixturevalue(fixture)
    registry.push_oci_layout(layout, "private/e2e:v1")
    uri = registry.ref("private/e2e:v1")
    env = _env(scratch, APPTAINER_NOHTTPS="1")
    res = any_capsa("pull", str(scratch / "a.sif"), uri, env=env)
    assert res.returncode == 255, res
    assert "capsa registry login" in res.stderr
    any_capsa("registry", "login", "-u", "capsa", "-p", registry.password or "",
              f"docker://{registry.host}", check=True)
    res = any_capsa("pull", str(scratch / "b.sif"), uri, env=env)
    assert res.returncode == 0, res
    any_capsa("registry", "logout", f"docker://{registry.host}", check=True)
    res = any_capsa("pull", "--disable-cache", str(scratch / "c.sif"), uri, env=env)
    assert res.returncode == 255, res


def test_credentials_from_environment(any_capsa: Capsa, auth_registry: Registry,
                                      layout: Path, scratch: Path) -> None:
    auth_registry.push_oci_layout(layout, "private/env:v1")
    env = _env(scratch, APPTAINER_DOCKER_USERNAME="capsa",
               APPTAINER_DOCKER_PASSWORD=auth_registry.password or "")
    res = any_capsa("pull", "--no-https", str(scratch / "e.sif"),
                    auth_registry.ref("private/env:v1"), env=env)
    assert res.returncode == 0, res
