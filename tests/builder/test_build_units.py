"""Pieces of the build below the CLI: the nested container's command line
(flags passed through, fakeroot), shebang rules, path confinement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capsa.builder.metadata import with_shebang
from capsa.builder.sandbox import confined, remove_tree
from capsa.builder.scripts import ContainerOptions, run_post, run_test
from capsa.deffile.model import Script
from capsa.errors import ContainerError, UsageError
from capsa.runtime.request import ContainerRequest
from capsa.site import SiteSettings


class Recorder:
    """Stands in for running a container: records each request, answers *status*."""

    def __init__(self, status: int = 0) -> None:
        self.requests: list[ContainerRequest] = []
        self.status = status

    def __call__(self, request: ContainerRequest, site: SiteSettings) -> int:
        del site
        self.requests.append(request)
        return self.status


def test_post_request_passes_binds_and_gpus(tmp_path: Path) -> None:
    recorder = Recorder()
    options = ContainerOptions(binds=("/data:/data:ro",), nv=True, rocm=True,
                               run_container=recorder)
    run_post(Script("echo hi\n", "-c /bin/bash"), tmp_path, options)
    request = recorder.requests[0]
    assert (request.action, request.image, request.pwd) == ("exec", str(tmp_path), "/")
    assert request.writable and request.cleanenv and request.no_home
    assert request.bind[0] == "/data:/data:ro"
    assert request.gpus == ("nv", "rocm")
    assert request.fakeroot == (os.geteuid() != 0)
    assert "APPTAINER_ENVIRONMENT=/.singularity.d/env/91-environment.sh" in request.env
    assert request.args == ("/bin/sh", "-ex", "-c", "/bin/bash /.post.script")
    assert not (tmp_path / ".post.script").exists()


def test_post_failure_is_one_error(tmp_path: Path) -> None:
    options = ContainerOptions(run_container=Recorder(status=7))
    with pytest.raises(ContainerError, match="exit status 7"):
        run_post(Script("false\n"), tmp_path, options)


def test_test_request(tmp_path: Path) -> None:
    recorder = Recorder()
    run_test(tmp_path, ContainerOptions(nv=True, writable_tmpfs=True, fakeroot=True,
                                        run_container=recorder))
    request = recorder.requests[0]
    assert (request.action, request.image) == ("test", str(tmp_path))
    assert request.gpus == ("nv",) and request.writable_tmpfs and request.fakeroot
    assert not request.writable


@pytest.mark.parametrize(("script", "expected"), [
    (Script("    echo hi\n"), "#!/bin/sh\n\n    echo hi\n"),
    (Script("#!/bin/bash\necho hi\n"), "#!/bin/bash\necho hi\n"),
    (Script("\n    #!/usr/bin/env python3\nprint(1)\n"), "#!/usr/bin/env python3\nprint(1)\n"),
    (Script("echo\n", "-e"), "#!/bin/sh -e\n\necho\n"),
])
def test_shebang_rules(script: Script, expected: str) -> None:
    assert with_shebang(script) == expected


def test_confined(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "bad").symlink_to("/usr")
    assert confined(root, "/etc/passwd") == root / "etc/passwd"
    assert confined(root, "etc//x/./y") == root / "etc/x/y"
    with pytest.raises(UsageError, match="leaves the container"):
        confined(root, "/etc/../../x")
    with pytest.raises(UsageError, match="outside the container"):
        confined(root, "/bad/lib/x")
    (root / "etc/leaf").symlink_to("/etc/passwd")
    with pytest.raises(UsageError, match="outside the container"):
        confined(root, "/etc/leaf")
    (root / "etc/inside").symlink_to("leaf2")
    assert confined(root, "/etc/inside") == root / "etc/inside"


def test_remove_tree_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "tree/locked"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    locked.chmod(0o500)
    remove_tree(tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


@pytest.mark.parametrize(("text", "uri"), [
    ("Bootstrap: docker\nFrom: alpine:3.19\n", "docker://alpine:3.19"),
    ("Bootstrap: docker\nFrom: docker://alpine\n", "docker://alpine"),
    ("Bootstrap: docker\nRegistry: example.org\nNamespace: team/\nFrom: app:1\n",
     "docker://example.org/team/app:1"),
    ("Bootstrap: oci-archive\nFrom: /x/img.tar\n", "oci-archive:/x/img.tar"),
    ("Bootstrap: oci\nFrom: layout:tag\n", "oci:layout:tag"),
])
def test_source_uri(text: str, uri: str) -> None:
    from capsa.builder.agents.oci import source_uri
    from capsa.deffile.parser import parse

    assert source_uri(parse(text).final) == uri


def test_fix_permissions(tmp_path: Path) -> None:
    from capsa.builder.sandbox import fix_permissions

    (tmp_path / "d").mkdir(mode=0o500)
    (tmp_path / "f").write_text("x")
    (tmp_path / "f").chmod(0o000)
    fix_permissions(tmp_path)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
