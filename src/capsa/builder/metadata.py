"""What a stage writes under ``/.singularity.d``: the base tree for agents
that bring none, then the definition's scripts, environment, labels, help
and the definition itself (older ones kept in ``bootstrap_history``)."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path

from capsa import report
from capsa.builder.agents import Base
from capsa.builder.scripts import BUILD_LABELS
from capsa.deffile.model import Definition, Script, Stage
from capsa.deffile.parser import parse_labels
from capsa.errors import FormatError
from capsa.jsondoc import load
from capsa.rootfs.singularity_d import (
    ENVIRONMENT_ENV,
    base_entries,
    build_labels,
    labels_json,
    metadata_entries,
)

log = report.getLogger("capsa.builder")

META = ".singularity.d"


def write_metadata(stage: Stage, rootfs: Path, base: Base, definition: Definition, *,
                   phase: str, arch: str, sections: Collection[str] = ("all",),
                   epoch: int | None = None) -> None:
    """``phase="base"`` right after bootstrap, ``"final"`` after %post;
    *epoch* (SOURCE_DATE_EPOCH) stands for "now" in what is written."""
    from capsa.builder.sandbox import confined, write_entries

    if phase == "base":
        # A base with its own tree keeps it; only what it lacks is added
        # (an old image without 95-apps.sh, the action scripts...).
        write_entries(rootfs, metadata_entries({}, mtime=epoch), replace=not base.has_metadata)
        write_entries(rootfs, base_entries(mtime=epoch), replace=False)
        (rootfs / META / "env").mkdir(parents=True, exist_ok=True)
        return

    def wants(name: str) -> bool:
        return "all" in sections or name in sections

    meta = rootfs / META
    for inner in (f"{META}/env/x", f"{META}/bootstrap_history/x", f"{META}/x"):
        confined(rootfs, inner)  # a hostile base cannot point these outside
    if wants("help") and stage.script("help").body.strip():
        log.info("Adding help info")
        write_file(meta / "runscript.help", _dedent_trailing(stage.script("help").body), 0o644)
    if wants("labels"):
        _write_labels(stage, rootfs, base, arch, epoch)
    if wants("environment") and stage.script("environment").body.strip():
        log.info("Adding environment to container")
        _append_environment(meta / "env/90-environment.sh", stage.script("environment").body)
    for name, file_name, message in (("startscript", "startscript", "Adding startscript"),
                                     ("runscript", "runscript", "Adding runscript"),
                                     ("test", "test", "Adding testscript")):
        script = stage.script(name)
        if wants(name) and script.body.strip():
            log.info(message)
            write_file(meta / file_name, with_shebang(script), 0o755)
    _store_definition(meta, stage.raw or definition.raw)


def with_shebang(script: Script) -> str:
    """A ``#!`` first line is kept, else ``#!/bin/sh``; section arguments are
    appended to the interpreter line."""
    body = script.body.lstrip("\n")
    first, newline, rest = body.partition("\n")
    if first.strip().startswith("#!"):
        line = first.strip()
        return f"{line} {script.args}".rstrip() + newline + rest
    return f"#!/bin/sh {script.args}".rstrip() + "\n\n" + script.body.rstrip("\n") + "\n"


def _dedent_trailing(text: str) -> str:
    return text.strip("\n") + "\n"


def _regular(path: Path) -> bool:
    """A regular file, not a symlink (which could point at the host)."""
    return path.is_file() and not path.is_symlink()


def write_file(path: Path, text: str, mode: int) -> None:
    """*text* into the image at *path* with *mode*; a symlink there is
    replaced, never followed (the image's links point anywhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _append_environment(path: Path, body: str) -> None:
    existing = path.read_text() if _regular(path) else ENVIRONMENT_ENV
    write_file(path, existing + body.rstrip("\n") + "\n", 0o755)


def _write_labels(stage: Stage, rootfs: Path, base: Base, arch: str,
                  epoch: int | None) -> None:
    path = rootfs / META / "labels.json"
    labels: dict[str, str] = {}
    try:
        loaded = load(path.read_text(), "labels.json") if _regular(path) else {}
        if isinstance(loaded, dict):
            labels.update({str(k): str(v) for k, v in loaded.items()})
    except (OSError, ValueError, FormatError):
        pass
    now = int(time.time()) if epoch is None else epoch
    labels.update(build_labels(dict(stage.header), arch, now))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    labels["org.opencontainers.image.created"] = created
    labels["org.opencontainers.image.architecture"] = arch
    if _regular(rootfs / META / "runscript.help"):
        labels["org.label-schema.usage"] = "/.singularity.d/runscript.help"
    if base.name:
        labels["org.opencontainers.image.base.name"] = base.name
    if base.digest:
        labels["org.opencontainers.image.base.digest"] = base.digest
    if stage.labels:
        log.info("Adding labels")
        labels.update(dict(stage.labels))
    post_labels = rootfs / BUILD_LABELS.lstrip("/")
    if _regular(post_labels):
        labels.update(dict(parse_labels(post_labels.read_text(errors="replace"))))
        post_labels.unlink()
    write_file(path, labels_json(labels), 0o644)


def _store_definition(meta: Path, text: str) -> None:
    current = meta / "Singularity"
    if current.is_file() and not current.is_symlink():
        history = meta / "bootstrap_history"
        history.mkdir(exist_ok=True)
        index = len(os.listdir(history))
        os.replace(current, history / f"Singularity{index}")
    write_file(current, text, 0o644)
