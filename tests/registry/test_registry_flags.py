"""The shared registry flags and environment -> RegistryOptions."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from capsa.cli import environment
from capsa.cli.registry_flags import add_registry_flags, registry_options
from capsa.errors import UsageError
from capsa.registry import Credentials


def _args(*argv: str, env: dict[str, str] | None = None) -> argparse.Namespace:
    """The flags, then the variables that stand for the unset ones (as the CLI does)."""
    parser = argparse.ArgumentParser()
    add_registry_flags(parser)
    args = parser.parse_args(list(argv))
    environment.apply(args, "pull", env or {})
    return args


def test_defaults(tmp_path: Path) -> None:
    opts = registry_options(_args(), {}, tmp_path)
    assert not opts.no_https and opts.credentials is None and opts.authfile is None
    assert opts.home == tmp_path
    assert opts.registries_conf is not None


@pytest.mark.parametrize("env", [{"APPTAINER_NOHTTPS": "1"}, {"SINGULARITY_NOHTTPS": "true"},
                                 {"APPTAINER_NO_HTTPS": "t"}])
def test_no_https_from_env(env: dict[str, str], tmp_path: Path) -> None:
    assert registry_options(_args(env=env), env, tmp_path).no_https


def test_no_https_flags(tmp_path: Path) -> None:
    assert registry_options(_args("--no-https"), {}, tmp_path).no_https
    assert registry_options(_args("--nohttps"), {}, tmp_path).no_https
    assert not registry_options(_args(env={"APPTAINER_NOHTTPS": "0"}), {}, tmp_path).no_https


def test_credentials_from_env(tmp_path: Path) -> None:
    env = {"APPTAINER_DOCKER_USERNAME": "u", "APPTAINER_DOCKER_PASSWORD": "p"}
    assert registry_options(_args(env=env), {}, tmp_path).credentials == Credentials("u", "p")
    legacy = {"SINGULARITY_DOCKER_USERNAME": "l", "SINGULARITY_DOCKER_PASSWORD": "q"}
    assert registry_options(_args(env=legacy), {}, tmp_path).credentials == Credentials("l", "q")
    plain = {"DOCKER_USERNAME": "d", "DOCKER_PASSWORD": "e"}
    assert registry_options(_args(env=plain), {}, tmp_path).credentials == Credentials("d", "e")
    assert registry_options(_args(env={**plain, **env}), {}, tmp_path).credentials == \
        Credentials("u", "p")
    flags = _args("--docker-username", "f", "--docker-password", "g", env=env)
    assert registry_options(flags, {}, tmp_path).credentials == Credentials("f", "g")
    with pytest.raises(UsageError, match="without a username"):
        registry_options(_args(env={"APPTAINER_DOCKER_PASSWORD": "p"}), {}, tmp_path)


def test_docker_login_needs_a_terminal(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="terminal"):
        registry_options(_args("--docker-login"), {}, tmp_path)


def test_authfile_and_registries_conf(tmp_path: Path) -> None:
    conf = tmp_path / "r.conf"
    opts = registry_options(_args("--authfile", str(tmp_path / "a.json")),
                            {"CONTAINERS_REGISTRIES_CONF": str(conf)}, tmp_path)
    assert opts.authfile == tmp_path / "a.json"
    assert opts.registries_conf == (conf,)
    assert opts.credential_store().files() == [tmp_path / "a.json"]


@pytest.mark.parametrize(("uri", "name"), [
    ("docker://127.0.0.1:5000", "127.0.0.1:5000"),
    ("docker://quay.io/org/", "quay.io/org"),
    ("oras://ghcr.io", "ghcr.io"),
    ("registry.test", "registry.test"),
])
def test_registry_name(uri: str, name: str) -> None:
    from capsa.cli.commands.registry import registry_name

    assert registry_name(uri) == name


@pytest.mark.parametrize("uri", ["library://x", "https://x", "docker://"])
def test_registry_name_refuses(uri: str) -> None:
    from capsa.cli.commands.registry import registry_name

    with pytest.raises(UsageError):
        registry_name(uri)
