"""Unit tests of the ranks' shared container: which key a rank has, which
containers may be shared, the meeting file's name and contents, and the
door and presence locks between processes."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from capsa.runtime import request, sharens
from capsa.runtime.request import ContainerRequest
from capsa.runtime.spec import (
    ContainerSpec,
    EnvironmentSpec,
    Identity,
    ImageSpec,
    MountSpec,
    NamespaceSpec,
    OverlaySpec,
    ProcessSpec,
    UserNamespace,
)


def test_job_key_order() -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "OMPI_MCA_ess_base_jobid": "42",
           "PMIX_NAMESPACE": "slurm.pmix.7.0"}
    assert sharens.job_key(env, "mine") == "key:mine"
    assert sharens.job_key(env) == "pmix:slurm.pmix.7.0"
    del env["PMIX_NAMESPACE"]
    assert sharens.job_key(env) == "ompi:42"
    del env["OMPI_MCA_ess_base_jobid"]
    assert sharens.job_key(env) == "slurm:7.0"


@pytest.mark.parametrize("env", [{}, {"SLURM_JOB_ID": "7"}, {"SLURM_STEP_ID": "0"},
                                 {"PMIX_NAMESPACE": ""}])
def test_no_job_no_key(env: dict[str, str]) -> None:
    """A batch script's own commands (no step) and plain shells share nothing."""
    assert sharens.job_key(env) is None


def test_the_request_knows_the_job_variables() -> None:
    """The request decides without importing sharens (a lone exec stays lean)."""
    assert request._JOB_VARIABLES == sharens.JOB_VARIABLES


def test_keys_from_requests() -> None:
    job = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0"}
    plain = ContainerRequest("i.sif", args=("true",))
    assert request._share_key(plain, {}) is None
    assert request._share_key(plain, job) == "slurm:7.0"
    assert request._share_key(plain._replace(no_share_ns=True), job) is None
    assert request._share_key(plain._replace(share_ns="k"), {}) == "key:k"
    assert request._share_key(plain._replace(sharens=True), {}) == f"key:{sharens.parent_key()}"
    assert request._share_key(plain._replace(action="start"), job) is None  # instances


def _spec(tmp_path: Path, *, process: dict[str, object] | None = None,
          mounts: dict[str, object] | None = None, **changes: object) -> ContainerSpec:
    image = tmp_path / "image.sif"
    if not image.exists():
        image.write_bytes(b"x")
    who = Identity(1000, 1000, (), "u", "", "/home/u", "/bin/sh")
    spec = ContainerSpec(
        image=ImageSpec("squashfs", str(image)),
        process=ProcessSpec("exec", ("true",), "/work")._replace(**(process or {})),
        mounts=MountSpec("/home/u", "/home/u")._replace(**(mounts or {})),
        environment=EnvironmentSpec(str(image)), identity=who, share_key="key:k")
    return spec._replace(**changes)


def test_writable_containers_and_builds_are_not_shared(tmp_path: Path) -> None:
    assert sharens.shareable(_spec(tmp_path))
    assert not sharens.shareable(_spec(tmp_path, mounts={"writable": True}))
    assert not sharens.shareable(_spec(tmp_path, userns=UserNamespace(state="/x/db")))
    assert not sharens.shareable(_spec(tmp_path, share_key=None))
    assert not sharens.shareable(_spec(tmp_path, mounts={"writable_tmpfs": True}))
    assert not sharens.shareable(_spec(tmp_path, mounts={"overlays": (OverlaySpec("/o"),)}))
    assert sharens.shareable(
        _spec(tmp_path, mounts={"overlays": (OverlaySpec("/o", readonly=True),)}))


def test_what_ranks_must_agree_on(tmp_path: Path) -> None:
    text = sharens._meeting_text(_spec(tmp_path))
    same = sharens._meeting_text(_spec(
        tmp_path, process={"argv": ("other",), "pwd": "/tmp", "action": "run"},
        environment=EnvironmentSpec(str(tmp_path / "image.sif"), forced=(("A", "1"),),
                                    host=(("OMPI_COMM_WORLD_RANK", "3"),))))
    assert text == same
    for changed in (_spec(tmp_path, mounts={"contain": True}),
                    _spec(tmp_path, namespaces=NamespaceSpec(pid=True)),
                    _spec(tmp_path, process={"cwd": "/elsewhere"}),
                    _spec(tmp_path, share_key="key:other")):
        assert sharens._meeting_text(changed) != text
    (tmp_path / "image.sif").write_bytes(b"changed")  # a rebuilt image
    assert sharens._meeting_text(_spec(tmp_path)) != text


def test_file_names_are_plain(tmp_path: Path) -> None:
    name = sharens._file_name("key:../../etc/passwd x", "text")
    assert "/" not in name and " " not in name
    assert name.startswith("key_.._.._etc_passwd_x-")
    assert sharens._file_name("k", "text") != sharens._file_name("k", "other text")


@pytest.mark.parametrize("content", ["", "12\n", "x\n1\n/r\ntext", "12\n34\n/root"])
def test_unfinished_meeting_files_name_nobody(content: str) -> None:
    assert sharens._parse(content) is None


def test_a_published_meeting_file() -> None:
    assert sharens._parse("12\n34\n/s/root\nkey\nmore") == (12, 34, "/s/root", "key\nmore")


def test_a_dead_or_foreign_process_is_no_owner() -> None:
    mine = sharens._process_identity(os.getpid())
    assert mine is not None and mine[0] == os.geteuid()
    assert sharens._verified_owner(os.getpid(), mine[1] + 1, "/r") is None  # recycled PID
    assert sharens._verified_owner(2 ** 22 + 1, 0, "/r") is None
    if os.geteuid() != 0:
        assert sharens._verified_owner(1, sharens._process_identity(1) or 0, "/r") is None


def test_presence_keeps_the_last_rank_waiting(tmp_path: Path) -> None:
    """A rank's shared presence blocks another process's exclusive lock
    until the rank is gone, even killed (the kernel drops its locks)."""
    path = tmp_path / "meeting"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - a rank
        os.close(read_end)
        own = os.open(path, os.O_RDWR)
        fcntl.lockf(own, fcntl.LOCK_SH, 1, 1)
        os.write(write_end, b"in")
        os.pause()
    os.close(write_end)
    assert os.read(read_end, 2) == b"in"
    assert not sharens._try_lock(fd, fcntl.LOCK_EX, 1)
    assert sharens._try_lock(fd, fcntl.LOCK_EX, 0)  # the door is free meanwhile
    os.kill(child, 9)
    os.waitpid(child, 0)
    assert sharens._try_lock(fd, fcntl.LOCK_EX, 1)
    os.close(fd)
    os.close(read_end)
