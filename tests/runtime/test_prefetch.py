"""Reading the first programs ahead of their exec (a squashfs's cold exec is
the largest part of a container's start), and cleaning that reader up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capsa.runtime import launcher
from capsa.runtime.mounts import Session
from capsa.runtime.spec import ProcessSpec


def _session(tmp_path: Path) -> Session:
    return Session(str(tmp_path), rootless=os.geteuid() != 0)


def test_prefetch_reads_existing_programs_in_a_child_that_close_reaps(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/busybox").write_bytes(b"\x7fELF" + bytes(3 << 20))
    (root / "usr/bin/sh").symlink_to("busybox")
    session = _session(tmp_path)
    session.prefetch(str(root), ["/bin/sh", "/usr/bin/busybox", "/bin/missing"])
    assert session.prefetcher is not None
    pid = session.prefetcher.pid
    session.close()
    assert session.prefetcher is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: nothing is left running


def test_prefetch_without_any_file_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    session = _session(tmp_path)
    session.prefetch(str(tmp_path / "root"), ["/bin/sh"])
    assert session.prefetcher is None
    session.close()


def test_prefetch_never_follows_links_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin/sh").symlink_to("/etc/passwd")  # a hostile image
    session = _session(tmp_path)
    session.prefetch(str(root), ["/bin/sh"])
    assert session.prefetcher is None  # resolved inside the root: /etc/passwd is not there
    session.close()


@pytest.mark.parametrize(("action", "argv", "expected_extra"), [
    ("exec", ("python3", "-c", "1"), [f"{d}/python3" for d in (
        "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")]),
    ("exec", ("/opt/tool",), ["/opt/tool"]),
    ("exec", ("./relative",), []),
    ("run", ("arg",), []),
])
def test_first_programs(action: str, argv: tuple[str, ...], expected_extra: list[str]) -> None:
    spec = launcher.ContainerSpec(  # only the process matters here
        None, ProcessSpec(action, argv, "/"), None, None, None)  # type: ignore[arg-type]
    assert launcher._first_programs(spec) == ["/bin/sh", *expected_extra]
