"""capsa.runtime.request: a request becomes a ContainerSpec by a pure function,
checked here without any namespace or mount."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capsa.errors import ContainerError, NotFoundError, UsageError
from capsa.runtime.request import ContainerRequest, Host, container_spec, expand
from capsa.runtime.spec import BindSpec, OverlaySpec
from capsa.site import SiteSettings


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    return root


def _host(tmp_path: Path, **environ: str) -> Host:
    return Host({"HOME": str(tmp_path), **environ}, str(tmp_path))


def test_a_plain_exec(sandbox: Path, tmp_path: Path) -> None:
    spec = container_spec(ContainerRequest(str(sandbox), args=("true",)), _host(tmp_path))
    assert (spec.image.kind, spec.image.path) == ("dir", str(sandbox))
    assert (spec.process.action, spec.process.argv, spec.process.cwd) == (
        "exec", ("true",), str(tmp_path))
    assert spec.environment.image_ref == str(sandbox)
    assert spec.identity.uid == os.getuid()
    assert not spec.namespaces.pid and spec.mounts.use_fuse and spec.gpu is None


def test_flags_reach_their_parts(sandbox: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "over").mkdir()
    request = ContainerRequest(
        str(sandbox), action="run", args=("a",), bind=(f"{tmp_path}/data:/d:ro",),
        overlay=(f"{tmp_path}/over:ro",), no_mount=("tmp,sys",), no_home=True,
        scratch=("/s1,/s2",), pwd="/w", hostname="inside", app="hello", unsquash=True,
        env=("A=1",), no_env=("SECRET",), image_ref="docker://x/y:z")
    spec = container_spec(request, _host(tmp_path, SECRET="s", KEEP="k",
                                         APPTAINERENV_B="2"))
    assert spec.mounts.binds == (BindSpec(f"{tmp_path}/data", "/d", True),)
    assert spec.mounts.overlays == (OverlaySpec(f"{tmp_path}/over", True),)
    assert spec.mounts.no_mount == frozenset({"tmp", "sys", "home"})
    assert spec.mounts.scratch == ("/s1", "/s2") and not spec.mounts.use_fuse
    assert (spec.process.pwd, spec.process.app) == ("/w", "hello")
    assert spec.namespaces.hostname == "inside"
    host = dict(spec.environment.host)
    assert host.get("KEEP") == "k" and "SECRET" not in host
    assert dict(spec.environment.forced) == {"A": "1", "B": "2"}
    assert spec.environment.image_ref == "docker://x/y:z"


def test_containall_and_compat_expand(sandbox: Path, tmp_path: Path) -> None:
    assert expand(ContainerRequest("i", containall=True)).cleanenv
    spec = container_spec(ContainerRequest(str(sandbox), args=("t",), compat=True),
                          _host(tmp_path, KEEP="k"))
    assert spec.mounts.contain and spec.mounts.writable_tmpfs
    assert spec.namespaces.pid and spec.namespaces.ipc and spec.process.no_init
    assert dict(spec.environment.forced)["APPTAINER_NO_EVAL"] == "1"
    assert "KEEP" not in dict(spec.environment.host)  # --cleanenv


def test_fakeroot_identity(sandbox: Path, tmp_path: Path) -> None:
    spec = container_spec(ContainerRequest(str(sandbox), args=("t",), fakeroot=True,
                                           ignore_fakeroot_command=True), _host(tmp_path))
    assert (spec.identity.uid, spec.identity.home) == (0, "/root")
    assert spec.userns.fakeroot and spec.userns.tool is None
    assert spec.mounts.home_dest == "/root"


def test_site_settings_decide_mounting(sandbox: Path, tmp_path: Path) -> None:
    host = Host({}, "/", SiteSettings(fuse=False, overlay=False))
    spec = container_spec(ContainerRequest(str(sandbox), args=("t",)), host)
    assert not spec.mounts.use_fuse and not spec.mounts.use_overlay


@pytest.mark.parametrize(("request_fields", "error", "text"), [
    ({"args": ()}, UsageError, "exec requires a command"),
    ({"pwd": "relative"}, UsageError, "--pwd must be an absolute path"),
    ({"bind": ("/nonexistent-capsa:/x",)}, ContainerError, "doesn't exist"),
    ({"overlay": ("/nonexistent-capsa",)}, ContainerError, "does not exist"),
    ({"no_mount": ("bogus",)}, UsageError, "invalid --no-mount value"),
    ({"workdir": "/nonexistent-capsa"}, NotFoundError, "workdir"),
    ({"scratch": ("relative",)}, UsageError, "must be an absolute path"),
    ({"home": "/nonexistent-capsa"}, ContainerError, "home directory"),
    ({"network": "bridge"}, ContainerError, "network"),
])
def test_bad_requests_are_one_error(sandbox: Path, tmp_path: Path,
                                    request_fields: dict[str, object],
                                    error: type[Exception], text: str) -> None:
    if request_fields.get("network") and os.geteuid() == 0:
        text = "CNI plugins"
    request = ContainerRequest(str(sandbox), args=("t",))._replace(**request_fields)
    with pytest.raises(error, match=text):
        container_spec(request, _host(tmp_path))


def test_a_missing_image(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        container_spec(ContainerRequest(str(tmp_path / "absent.sif"), args=("t",)),
                       _host(tmp_path))
