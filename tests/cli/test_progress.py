"""Progress bars: on stderr when it is a terminal (a real pty), never
otherwise, so that spython and Snakemake still read only what they did."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
from pathlib import Path

import pytest

from capsa.cli.progress import render
from support.cli import Capsa
from support.images import build_all
from support.ocibuild import busybox_layout
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)


def test_render() -> None:
    assert render("Copying blobs", 0, 4 << 20, 60) == (
        "Copying blobs [                         ]   0%  0.0/4.0 MiB")
    half = render("Copying blobs", 2 << 20, 4 << 20, 60)
    assert half == "Copying blobs [===========>             ]  50%  2.0/4.0 MiB"
    assert len(half) == 60 - 1  # the last column stays free: no wrap
    assert render("Creating squashfs", 7, 7, 40, sizes=False) == (
        "Creating squashfs [==============] 100%")
    assert render("Creating squashfs", 1, 3, 20, sizes=False) == "Creating squashfs  "
    assert render("x", 5, 0, 30, sizes=False).endswith("]   0%")


def on_pty(capsa: Capsa, args: list[str], env: dict[str, str], cwd: Path
           ) -> tuple[int, str, str]:
    """Run capsa with stderr on a fresh pty: (status, stderr as the terminal
    got it, stdout)."""
    master, slave = pty.openpty()
    argv = capsa.user.wrap(["env", *(f"{k}={v}" for k, v in capsa.full_env(env).items()),
                            *capsa.argv(*args)])
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the pty
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=slave, cwd=cwd, timeout=300)
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    text = re.sub("\x1b\\[[0-9;]*m", "", text)  # message colours; the bar's \x1b[K stays
    return proc.returncode, text, proc.stdout.decode()


@pytest.fixture(scope="module")
def busybox_ref(plain_registry: Registry, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
                ) -> str:
    layout = busybox_layout(tmp_path_factory.mktemp("progress") / "busybox")
    plain_registry.push_oci_layout(layout, "progress/busybox:latest")
    return f"docker://{plain_registry.host}/progress/busybox:latest"


def _env(scratch: Path) -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(scratch)}


def test_pull_shows_bars_on_a_terminal(any_capsa: Capsa, busybox_ref: str,
                                       scratch: Path) -> None:
    status, terminal, stdout = on_pty(any_capsa, ["pull", "--no-https", "t.sif", busybox_ref],
                                      _env(scratch), scratch)
    assert status == 0, terminal
    assert "Copying blobs [" in terminal and "100%" in terminal, terminal
    assert "Creating squashfs [" in terminal, terminal
    assert "\rCreating squashfs [" in terminal  # redrawn in place
    assert stdout == ""
    # every bar line ends before the next message
    assert "\nINFO:    Converting OCI blobs to SIF format" in terminal


def test_pull_is_silent_off_a_terminal(any_capsa: Capsa, busybox_ref: str,
                                       scratch: Path) -> None:
    result = any_capsa("pull", "--no-https", "t.sif", busybox_ref, cwd=scratch,
                       env=_env(scratch))
    assert result.returncode == 0, result
    assert result.stderr == "INFO:    Converting OCI blobs to SIF format\n", result
    quiet = any_capsa("-q", "pull", "--no-https", "--disable-cache", "u.sif", busybox_ref,
                      cwd=scratch, env=_env(scratch))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet


@pytest.mark.needs_userns
def test_build_shows_the_squashfs_bar(any_capsa: Capsa, scratch: Path) -> None:
    base = build_all(scratch / "img")["sif"]
    definition = scratch / "p.def"
    definition.write_text(f"Bootstrap: localimage\nFrom: {base}\n\n%post\n    echo posted\n")
    status, terminal, _ = on_pty(any_capsa, ["build", "p.sif", str(definition)],
                                 _env(scratch), scratch)
    assert status == 0, terminal
    assert "\rCreating squashfs [" in terminal and "100%" in terminal, terminal
    assert "\x1b[K\nINFO:    Build complete: p.sif" in terminal, terminal
    plain = any_capsa("build", "q.sif", str(definition), cwd=scratch, env=_env(scratch))
    assert plain.returncode == 0, plain
    assert "\r" not in plain.stderr and "[" not in plain.stderr, plain
    assert "Creating squashfs" not in plain.stderr
