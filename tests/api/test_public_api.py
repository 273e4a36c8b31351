"""capsa as a library, used only through ``import capsa`` as an outside
caller would: pull, inspect, run and exec (also from a thread of a larger
program), build, verify, instances; errors from one tree, nothing printed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import capsa
from support import ocibuild
from support.env import SCRATCH, is_root
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not is_root(), reason="the library tests run as root "
                                "(the CLI tests cover the unprivileged user)")


@pytest.fixture(scope="module")
def busybox(plain_registry: Registry) -> Iterator[str]:  # noqa: F811
    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="api-", dir=SCRATCH))
    try:
        layout = ocibuild.busybox_layout(base / "busybox", "latest")
        plain_registry.push_oci_layout(layout, "api/busybox:latest")
        yield plain_registry.ref("api/busybox:latest")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "APPTAINER_CACHEDIR": str(tmp_path / "cache"),
            "PATH": "/usr/bin:/bin"}


def test_every_public_name_resolves() -> None:
    for name in capsa.__all__:
        assert getattr(capsa, name) is not None, name
    with pytest.raises(AttributeError):
        capsa.no_such_thing  # noqa: B018


def test_pull_inspect_run_exec(busybox: str, tmp_path: Path, environ: dict[str, str],
                               capfd: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "bb.sif"
    result = capsa.pull(capsa.PullRequest(busybox, dest=str(dest), no_https=True),
                        environ=environ)
    assert result.dest == dest and dest.is_file() and result.manifest_digest
    again = capsa.pull(capsa.PullRequest(busybox, dest=str(dest), no_https=True, force=True),
                       environ=environ)
    assert again.cached
    info = capsa.inspect(str(dest))
    assert isinstance(info, capsa.ImageMetadata)
    assert "org.label-schema.schema-version" in info.labels or info.labels == {}
    assert capsa.run(capsa.ContainerRequest(str(dest), args=("true",))) == 0
    assert capsa.exec(str(dest), "sh", "-c", "exit 3") == 3
    assert capsa.exec(str(dest), "sh", "-c", "echo $X", env=("X=from-api",)) == 0
    assert "from-api" in capfd.readouterr().out


def test_a_uri_is_pulled_over_https_first(busybox: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """run() pulls docker:// URIs as exec does, over HTTPS: the suite's plain
    HTTP registry then answers no, as one capsa error (capsa.pull with
    no_https=True is the way for such a registry)."""
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "cache"))
    with pytest.raises(capsa.CapsaError):
        capsa.run(capsa.ContainerRequest(busybox, args=("true",)))


def test_errors_are_capsas_and_nothing_is_printed(tmp_path: Path, environ: dict[str, str],
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(capsa.CapsaError):
        capsa.run(capsa.ContainerRequest(str(tmp_path / "absent.sif"), args=("true",)))
    with pytest.raises(capsa.CapsaError):
        capsa.pull(capsa.PullRequest("bogus://x", dest=str(tmp_path / "x.sif")),
                   environ=environ)
    out = capfd.readouterr()
    assert (out.out, out.err) == ("", "")


def test_run_from_a_thread_of_a_larger_program(busybox: str, tmp_path: Path,
                                               environ: dict[str, str]) -> None:
    dest = tmp_path / "bb.sif"
    capsa.pull(capsa.PullRequest(busybox, dest=str(dest), no_https=True), environ=environ)
    results: list[int] = []

    def worker(code: int) -> None:
        results.append(capsa.exec(str(dest), "sh", "-c", f"exit {code}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in (0, 5, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [0, 5, 7]


def test_build_from_a_definition(tmp_path: Path, environ: dict[str, str]) -> None:
    definition = tmp_path / "app.def"
    definition.write_text("Bootstrap: busybox\n\n%post\n    echo built > /built\n\n"
                          "%runscript\n    cat /built\n")
    dest = capsa.build(capsa.BuildRequest(str(tmp_path / "app.sif"), str(definition),
                                          notest=True), environ=environ)
    assert dest.is_file()
    listing = subprocess.run(["unsquashfs", "-l", "-o",
                              str(ocibuild.partition_offset(dest)), str(dest)],
                             capture_output=True, text=True, check=True).stdout
    assert "squashfs-root/built" in listing
    with pytest.raises(capsa.CapsaError, match="already exists"):
        capsa.build(capsa.BuildRequest(str(dest), str(definition)), environ=environ)


def test_verify_an_unsigned_image(busybox: str, tmp_path: Path,
                                  environ: dict[str, str]) -> None:
    dest = tmp_path / "bb.sif"
    capsa.pull(capsa.PullRequest(busybox, dest=str(dest), no_https=True), environ=environ)
    with pytest.raises(capsa.CapsaError):
        capsa.verify(str(dest), keyring=str(tmp_path / "no-keys"))


def test_instances(busybox: str, tmp_path: Path, environ: dict[str, str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPTAINER_CONFIGDIR", str(tmp_path / "conf"))
    dest = tmp_path / "bb.sif"
    capsa.pull(capsa.PullRequest(busybox, dest=str(dest), no_https=True), environ=environ)
    started = capsa.start_instance(
        capsa.ContainerRequest(str(dest), action="run", args=("sleep", "60")), "apitest")
    try:
        assert started.name == "apitest" and started.pid > 0
        assert [i.name for i in capsa.instances("api*")] == ["apitest"]
    finally:
        capsa.stop_instance("apitest", timeout=5)
    assert capsa.instances("api*") == []
