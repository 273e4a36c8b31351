"""Problem 6: every malformed input is one FATAL line, never a traceback or
a hang.

Numbers beyond any field (``"size": 1e400``, ``NaN``) and nesting ten
thousand deep, in what a registry, an OCI layout or a docker archive hands
over; FIFOs given as images to ``exec``, ``inspect``, ``run-help``, ``build``
(as the definition, and as ``From:``); and, the other way round, a valid
``%files src /`` that used to be refused.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from support.cli import Capsa, Result
from support.registry import HostileRegistry
from trust import figures

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ZERO = "sha256:" + "0" * 64
DEEP = 20_000


def _descriptor(size: str, media_type: str = OCI_MANIFEST) -> str:
    return (f'{{"mediaType": "{media_type}", "digest": "{ZERO}", "size": {size}, '
            '"platform": {"architecture": "amd64", "os": "linux"}}')


# Documents a hostile source hands over, as text (json.dumps cannot write them).
DOCUMENTS = {
    "index-size-1e400": f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", '
                        f'"manifests": [{_descriptor("1e400")}]}}',
    "index-size-NaN": f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", '
                      f'"manifests": [{_descriptor("NaN")}]}}',
    "index-size-huge": f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", '
                       f'"manifests": [{_descriptor("9" * 400)}]}}',
    "index-nested": f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", '
                    f'"manifests": {"[" * DEEP}{"]" * DEEP}}}',
    "manifest-config-1e400": f'{{"schemaVersion": 2, "mediaType": "{OCI_MANIFEST}", '
                             f'"config": {_descriptor("1e400", OCI_CONFIG)}, "layers": []}}',
    "manifest-nested-annotations": f'{{"schemaVersion": 2, "mediaType": "{OCI_MANIFEST}", '
                                   f'"config": {_descriptor("2", OCI_CONFIG)}, "layers": [], '
                                   f'"annotations": {{"a": {"[" * DEEP}{"]" * DEEP}}}}}',
}


def _one_fatal(result: Result | None) -> bool:
    """Did it end with exactly one FATAL line (and no traceback)?"""
    return (result is not None and result.returncode == 255
            and result.stderr.count("FATAL:   ") == 1
            and result.stderr.rstrip("\n").splitlines()[-1].startswith("FATAL:   ")
            and "Traceback" not in result.stderr and "internal error" not in result.stderr)


def _run(capsa: Capsa, *args: str, cwd: Path, timeout: float = 60) -> Result | None:
    """The CLI's answer; None if it hung."""
    try:
        return capsa(*args, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _count(outcomes: dict[str, Result | None]) -> None:
    bad = {name: str(result) for name, result in outcomes.items() if not _one_fatal(result)}
    figures.add("fuzz", len(outcomes), len(bad))
    assert bad == {}


def _layout(root: Path, index: str) -> Path:
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(index)
    for path in (root, *root.iterdir()):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return root


def test_hostile_documents_in_an_oci_layout(any_capsa: Capsa, scratch: Path) -> None:
    outcomes = {}
    for name, text in DOCUMENTS.items():
        if not name.startswith("index"):
            continue
        layout = _layout(scratch / name, text)
        outcomes[name] = _run(any_capsa, "pull", str(scratch / f"{name}.sif"), f"oci:{layout}",
                              cwd=scratch)
    _count(outcomes)


def test_hostile_documents_from_a_registry(any_capsa: Capsa, scratch: Path,
                                           hostile_registry: HostileRegistry) -> None:
    outcomes = {}
    for name, text in DOCUMENTS.items():
        media_type = OCI_INDEX if name.startswith("index") else OCI_MANIFEST
        hostile_registry.push_raw(f"malformed/{name}", text.encode(), media_type=media_type)
        ref = hostile_registry.ref(f"malformed/{name}:latest")
        outcomes[f"pull {name}"] = _run(any_capsa, "pull", "--no-https",
                                        str(scratch / f"{name}.sif"), ref, cwd=scratch)
        outcomes[f"exec {name}"] = _run(any_capsa, "exec", "--no-https", ref, "true",
                                        cwd=scratch)
    _count(outcomes)


def _archive(path: Path, manifest: str) -> Path:
    with tarfile.open(path, "w") as tar:
        data = manifest.encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.chmod(0o644)
    return path


def test_hostile_docker_archives(any_capsa: Capsa, scratch: Path) -> None:
    manifests = {"number": '[{"Config": "c.json", "Layers": [], "x": 1e400}]',
                 "nested": "[" * DEEP + "]" * DEEP,
                 "not-a-list": json.dumps({"Config": "c.json"})}
    outcomes = {}
    for name, text in manifests.items():
        archive = _archive(scratch / f"{name}.tar", text)
        outcomes[name] = _run(any_capsa, "pull", str(scratch / f"{name}.sif"),
                              f"docker-archive:{archive}", cwd=scratch)
    _count(outcomes)


FifoCommand = Callable[[Path, Path], list[str]]
FIFO_COMMANDS: dict[str, FifoCommand] = {
    "exec": lambda fifo, _: ["exec", str(fifo), "true"],
    "run": lambda fifo, _: ["run", str(fifo)],
    "inspect": lambda fifo, _: ["inspect", str(fifo)],
    "run-help": lambda fifo, _: ["run-help", str(fifo)],
    "verify": lambda fifo, _: ["verify", str(fifo)],
    "build-definition": lambda fifo, d: ["build", str(d / "out.sif"), str(fifo)],
    "build-from": lambda fifo, d: ["build", str(d / "out2.sif"), str(d / "from-fifo.def")],
    "pull-layout": lambda fifo, d: ["pull", str(d / "out3.sif"), f"oci:{d / 'layout'}"],
}


def test_fifos_are_refused_not_waited_on(any_capsa: Capsa, scratch: Path) -> None:
    fifo = scratch / "image.sif"
    os.mkfifo(fifo, 0o666)
    (scratch / "from-fifo.def").write_text(f"Bootstrap: localimage\nFrom: {fifo}\n")
    layout = scratch / "layout"
    layout.mkdir(mode=0o755)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    os.mkfifo(layout / "index.json", 0o666)
    outcomes = {name: _run(any_capsa, *command(fifo, scratch), cwd=scratch, timeout=30)
                for name, command in FIFO_COMMANDS.items()}
    _count(outcomes)


@pytest.mark.needs_userns
def test_files_may_go_to_the_root(any_capsa: Capsa, scratch: Path) -> None:
    from trust.conftest import marked_sif

    (scratch / "base").mkdir(mode=0o755)
    base = marked_sif(scratch / "base", "base")
    source = scratch / "hello.txt"
    source.write_text("at the root\n")
    source.chmod(0o644)
    definition = scratch / "files.def"
    definition.write_text(f"Bootstrap: localimage\nFrom: {base}\n\n%files\n    {source} /\n")
    built = any_capsa("build", str(scratch / "files.sif"), str(definition), cwd=scratch,
                      env={"TMPDIR": str(scratch)})
    assert built.returncode == 0, built
    ran = any_capsa("exec", str(scratch / "files.sif"), "cat", "/hello.txt", cwd=scratch)
    assert (ran.returncode, ran.stdout) == (0, "at the root\n"), ran
