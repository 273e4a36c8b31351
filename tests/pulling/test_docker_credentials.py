"""Docker credentials from the environment, with and without Apptainer's prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.cli import Capsa
from support.registry import Registry


def _pull(capsa: Capsa, ref: str, scratch: Path, **env: str) -> Any:
    capsa.user.own(scratch)
    return capsa("pull", "--no-https", "--disable-cache", "x.sif", ref, cwd=scratch,
                 env={"APPTAINER_CACHEDIR": str(scratch / "cache"), **env})


def test_plain_docker_username_and_password(any_capsa: Capsa, auth_registry: Registry,
                                            images: Any, scratch: Path) -> None:
    auth_registry.push_oci_layout(images.layout("busybox"), "private/plain:latest")
    ref = auth_registry.ref("private/plain:latest")
    result = _pull(any_capsa, ref, scratch, DOCKER_USERNAME=auth_registry.username or "",
                   DOCKER_PASSWORD=auth_registry.password or "")
    assert result.returncode == 0, result
    assert (scratch / "x.sif").is_file()


def test_prefixed_credentials_win_over_plain(any_capsa: Capsa, auth_registry: Registry,
                                             images: Any, scratch: Path) -> None:
    auth_registry.push_oci_layout(images.layout("busybox"), "private/prefixed:latest")
    ref = auth_registry.ref("private/prefixed:latest")
    result = _pull(any_capsa, ref, scratch, DOCKER_USERNAME="nobody", DOCKER_PASSWORD="wrong",
                   APPTAINER_DOCKER_USERNAME=auth_registry.username or "",
                   APPTAINER_DOCKER_PASSWORD=auth_registry.password or "")
    assert result.returncode == 0, result
    other = scratch / "other"
    other.mkdir()
    wrong = _pull(any_capsa, ref, other, DOCKER_USERNAME="nobody", DOCKER_PASSWORD="wrong")
    assert wrong.returncode == 255 and wrong.stderr.startswith("FATAL:   "), wrong
    assert not (other / "x.sif").exists()
