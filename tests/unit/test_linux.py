"""Unit tests for the syscall choke point (what can be checked without root)."""

from __future__ import annotations

import os
import struct
import time

import pytest

from capsa import linux


def test_loop_config_matches_the_kernel_layout() -> None:
    raw = linux._loop_config(7, offset=4096, size=8192)
    # struct loop_config: u32 fd, u32 block_size, loop_info64 (232 bytes), u64[8]
    assert len(raw) == 8 + 232 + 64
    assert struct.unpack_from("=II", raw) == (7, 0)
    assert struct.unpack_from("=QQ", raw, 8 + 24) == (4096, 8192)
    flags = struct.unpack_from("=I", raw, 8 + 40 + 12)[0]
    assert flags == 1 | 4  # read-only, autoclear


def test_errors_carry_errno() -> None:
    with pytest.raises(OSError) as caught:
        linux.umount("/definitely/not/mounted/anywhere")
    assert caught.value.errno in (1, 2, 22)  # EPERM (not root), ENOENT, EINVAL


@pytest.mark.needs_root
def test_mount_in_a_private_namespace() -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            linux.unshare(linux.CLONE_NEWNS)
            linux.make_private("/")
            linux.mount("tmpfs", "/mnt", "tmpfs", linux.MS_NOSUID, "size=1m")
            linux.remount("/mnt", linux.MS_RDONLY)
            code = 0 if os.statvfs("/mnt").f_flag & 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_foreign_namespaces_of_ourselves_is_nothing() -> None:
    assert linux.foreign_namespaces(os.getpid(), (linux.CLONE_NEWUSER, linux.CLONE_NEWNS)) == []


def test_foreign_namespaces_of_a_gone_process_raises() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(FileNotFoundError):
        linux.foreign_namespaces(pid, (linux.CLONE_NEWUSER,))


@pytest.mark.needs_root
def test_foreign_namespaces_opens_only_the_other_ones() -> None:
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            linux.unshare(linux.CLONE_NEWUTS)
            os.write(ready_w, b"x")
            time.sleep(30)  # killed by the test
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        found = linux.foreign_namespaces(pid, (linux.CLONE_NEWUSER, linux.CLONE_NEWUTS,
                                               linux.CLONE_NEWNS))
        assert [kind for _fd, kind in found] == [linux.CLONE_NEWUTS]
        for fd, _kind in found:
            os.close(fd)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)
