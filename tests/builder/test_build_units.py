"""Pieces of the build below the CLI: the nested container's command line
(flags passed through, fakeroot), shebang rules, path confinement."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from capsa.builder.metadata import with_shebang
from capsa.builder.sandbox import confined, remove_tree
from capsa.builder.scripts import ContainerOptions, run_post, run_test
from capsa.deffile.model import Script
from capsa.errors import ContainerError, UsageError
from capsa.proc import Completed


class FakeRunner:
    def __init__(self, returncode: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode

    def run(self, argv: Sequence[str], *, check: bool = True, capture: bool = True,
            input: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, stdin: IO[Any] | int | None = None,
            stdout: IO[Any] | int | None = None) -> Completed:
        del check, capture, input, env, cwd, stdin, stdout
        self.calls.append(list(argv))
        return Completed(tuple(argv), self.returncode, b"", b"")


def test_post_argv_passes_binds_and_gpu_flags(tmp_path: Path) -> None:
    runner = FakeRunner()
    options = ContainerOptions(binds=("/data:/data:ro",), nv=True, rocm=True,
                               capsa=("capsa",), runner=runner)
    run_post(Script("echo hi\n", "-c /bin/bash"), tmp_path, options)
    argv = runner.calls[0]
    assert argv[:6] == ["capsa", "exec", "--writable", "--pwd", "/", "--cleanenv"]
    assert argv[argv.index("--bind"):argv.index("--bind") + 2] == ["--bind", "/data:/data:ro"]
    assert "--nv" in argv and "--rocm" in argv
    assert ("--fakeroot" in argv) == (os.geteuid() != 0)
    assert "APPTAINER_ENVIRONMENT=/.singularity.d/env/91-environment.sh" in argv
    assert argv[-4:] == ["/bin/sh", "-ex", "-c", "/bin/bash /.post.script"]
    assert argv[-5] == str(tmp_path)
    assert not (tmp_path / ".post.script").exists()


def test_post_failure_is_one_error(tmp_path: Path) -> None:
    options = ContainerOptions(capsa=("capsa",), runner=FakeRunner(returncode=7))
    with pytest.raises(ContainerError, match="exit status 7"):
        run_post(Script("false\n"), tmp_path, options)


def test_test_argv(tmp_path: Path) -> None:
    runner = FakeRunner()
    run_test(tmp_path, ContainerOptions(nv=True, writable_tmpfs=True, fakeroot=True,
                                        capsa=("capsa",), runner=runner))
    argv = runner.calls[0]
    assert argv[:2] == ["capsa", "test"]
    assert "--nv" in argv and "--writable-tmpfs" in argv and "--fakeroot" in argv
    assert "--writable" not in argv
    assert argv[-1] == str(tmp_path)


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
