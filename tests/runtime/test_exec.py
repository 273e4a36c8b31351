"""exec / run / shell / test through the CLI, as root and as a user, with
FUSE (kernel squashfs as root) and with the extraction fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.cli import Capsa
from support.site import site_env

pytestmark = pytest.mark.needs_userns


def test_exec_runs_as_the_caller(any_capsa: Capsa, images: dict[str, Path],
                                 mount_mode: dict[str, str]) -> None:
    result = any_capsa("exec", str(images["sif"]), "sh", "-c", "id -u; id -g; id -un; pwd",
                       env=mount_mode)
    assert result.returncode == 0, result
    uid, gid, name, cwd = result.stdout.split()
    assert (int(uid), int(gid), name) == (any_capsa.user.uid, any_capsa.user.gid,
                                          any_capsa.user.name)
    assert cwd == str(any_capsa.user.home)
    if mount_mode:
        assert result.stderr == "INFO:    Converting SIF file to temporary sandbox...\n"
    else:
        assert result.stderr == ""


def test_exit_status_and_signal_death(any_capsa: Capsa, images: dict[str, Path],
                                      mount_mode: dict[str, str]) -> None:
    sif = str(images["sif"])
    assert any_capsa("exec", sif, "sh", "-c", "exit 7", env=mount_mode).returncode == 7
    assert any_capsa("exec", sif, "sh", "-c", "kill -KILL $$", env=mount_mode).returncode == 137


def test_command_not_found(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", str(images["sif"]), "no-such-command")
    assert result.returncode == 127, result
    assert result.stderr == 'FATAL:   "no-such-command": executable file not found in $PATH\n'


def test_run_test_and_shell(any_capsa: Capsa, images: dict[str, Path]) -> None:
    sif = str(images["sif"])
    run = any_capsa("run", sif, "a", "b c")
    assert (run.returncode, run.stdout, run.stderr) == (0, "runscript args: a b c\n", "")
    test = any_capsa("test", sif)
    assert (test.returncode, test.stdout) == (0, "test passed\n")
    shell = any_capsa("shell", sif, input="echo from shell; echo $PS1; exit 3\n")
    assert shell.returncode == 3, shell
    assert shell.stdout == "from shell\nApptainer>\n"
    custom = any_capsa("shell", "--shell", "/bin/echo", sif, "hello")
    assert custom.stdout == "hello\n"


def test_sandbox_directory(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", str(images["sandbox"]), "cat", "/etc/passwd")
    assert result.returncode == 0, result
    assert f"{any_capsa.user.name}:x:{any_capsa.user.uid}:" in result.stdout


def test_image_without_shell(any_capsa: Capsa, images: dict[str, Path],
                             mount_mode: dict[str, str]) -> None:
    image = str(images["noshell_sif"])
    result = any_capsa("exec", "--env", "INJECTED=yes", image, "env", env=mount_mode)
    assert result.returncode == 0, result
    lines = set(result.stdout.splitlines())
    assert {"FROM_IMAGE=image value", "INJECTED=yes",
            "LD_LIBRARY_PATH=/.singularity.d/libs"} <= lines
    missing = any_capsa("exec", image, "ls")
    assert missing.returncode == 127
    assert '"ls": executable file not found in $PATH' in missing.stderr


def test_root_is_read_only_and_writable_tmpfs(any_capsa: Capsa,
                                              images: dict[str, Path]) -> None:
    sif = str(images["sif"])
    readonly = any_capsa("exec", sif, "touch", "/newfile")
    assert readonly.returncode != 0
    assert "Read-only file system" in readonly.stderr
    writable = any_capsa("exec", "--writable-tmpfs", sif, "sh", "-c",
                         "echo hi > /newfile && cat /newfile")
    assert (writable.returncode, writable.stdout) == (0, "hi\n"), writable


def test_overlay_directory_keeps_changes(any_capsa: Capsa, images: dict[str, Path],
                                         scratch: Path) -> None:
    overlay = scratch / "overlay"
    overlay.mkdir()
    any_capsa.user.own(overlay)
    sif = str(images["sif"])
    first = any_capsa("exec", "--overlay", str(overlay), sif, "sh", "-c", "echo kept > /data")
    assert first.returncode == 0, first
    assert (overlay / "upper" / "data").read_text() == "kept\n"
    second = any_capsa("exec", "--overlay", f"{overlay}:ro", sif, "cat", "/data")
    assert second.stdout == "kept\n", second


def test_writable_sandbox(any_capsa: Capsa, images: dict[str, Path], scratch: Path) -> None:
    import shutil

    sandbox = scratch / "sandbox"
    shutil.copytree(images["sandbox"], sandbox, symlinks=True)
    for root, dirs, _files in os.walk(sandbox):
        for name in dirs:
            os.chown(os.path.join(root, name), any_capsa.user.uid, any_capsa.user.gid)
    os.chown(sandbox, any_capsa.user.uid, any_capsa.user.gid)
    result = any_capsa("exec", "--writable", str(sandbox), "sh", "-c", "echo w > /etc/w")
    assert result.returncode == 0, result
    assert (sandbox / "etc" / "w").read_text() == "w\n"


def test_writable_refuses_a_sif(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", "--writable", str(images["sif"]), "true")
    assert result.returncode == 255
    assert result.stderr.startswith("FATAL:   --writable needs a sandbox")


def test_fakeroot(any_capsa: Capsa, images: dict[str, Path]) -> None:
    # /root is the user's own home, bound: what is written there stays
    probe = "/root/.capsa-test-fakeroot-$$"
    result = any_capsa("exec", "--fakeroot", str(images["sif"]), "sh", "-c",
                       f"id -u; echo $HOME; touch {probe} 2>/dev/null; rm -f {probe}; "
                       "echo done")
    assert result.returncode == 0, result
    assert result.stdout.split() == ["0", "/root", "done"]


def test_pid_namespace(any_capsa: Capsa, images: dict[str, Path]) -> None:
    sif = str(images["sif"])
    no_init = any_capsa("exec", "--pid", "--no-init", sif, "sh", "-c", "echo $$")
    assert (no_init.returncode, no_init.stdout) == (0, "1\n"), no_init
    with_init = any_capsa("exec", "-p", sif, "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    assert with_init.returncode == 0, with_init
    assert with_init.stdout.split()[0] == "2"


def test_hostname(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", "--hostname", "inside", str(images["sif"]), "hostname")
    assert (result.returncode, result.stdout) == (0, "inside\n"), result


def test_setuid_cannot_raise_privilege(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", str(images["sif"]), "grep", "NoNewPrivs", "/proc/self/status")
    assert result.stdout.split() == ["NoNewPrivs:", "1"], result


def test_sif_runs_itself_through_run_singularity(any_capsa: Capsa, images: dict[str, Path],
                                                 scratch: Path) -> None:
    """``./image.sif args``: the launch line ``#!/usr/bin/env run-singularity``."""
    import sys

    bindir = scratch / "bin"
    bindir.mkdir()
    wrapper = bindir / "run-singularity"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -c "from capsa.cli.main import '
                       'run_singularity_entry; run_singularity_entry()" "$@"\n')
    wrapper.chmod(0o755)
    import subprocess

    from tests.runtime.conftest import full_argv

    argv = full_argv(any_capsa, "version")
    at = argv.index("env")
    env_end = next(i for i in range(at + 2, len(argv)) if "=" not in argv[i])
    environment = [a if not a.startswith("PATH=") else f"PATH={bindir}:{a[5:]}"
                   for a in argv[at:env_end]]
    done = subprocess.run([*argv[:at], *environment, str(images["sif"]), "a", "b"],
                          capture_output=True, text=True, cwd=str(scratch), check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "runscript args: a b\n", "")


def test_without_overlayfs_missing_points_are_skipped(any_capsa: Capsa,
                                                      images: dict[str, Path],
                                                      scratch: Path) -> None:
    result = any_capsa("exec", "-B", f"{scratch}:/not/in/image", str(images["sif"]), "sh", "-c",
                       "ls /not/in/image 2>&1; touch /x 2>&1 | grep -c Read-only",
                       env=site_env(overlay=False))
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[-1] == "1"
    assert "skipping mount of /not/in/image" in result.stderr


def test_image_without_test_script(any_capsa: Capsa, images: dict[str, Path],
                                   scratch: Path) -> None:
    import shutil

    sandbox = scratch / "sandbox"
    shutil.copytree(images["sandbox"], sandbox, symlinks=True)
    (sandbox / ".singularity.d" / "test").unlink()
    result = any_capsa("test", str(sandbox))
    assert result.returncode == 0, result
    assert result.stderr == "INFO:    No test script found in container, exiting\n"


def test_bare_squashfs_image(any_capsa: Capsa, images: dict[str, Path],
                             mount_mode: dict[str, str]) -> None:
    result = any_capsa("exec", str(images["squashfs"]), "echo", "squashfs", env=mount_mode)
    assert (result.returncode, result.stdout) == (0, "squashfs\n"), result
