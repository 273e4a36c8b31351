"""inspect and run-help, as Apptainer prints them (and as spython parses them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import Capsa
from support.images import APP_HELP, HELP, LABELS, RUNSCRIPT, TEST_SCRIPT

pytestmark = pytest.mark.needs_userns


@pytest.mark.parametrize("key", ["sif", "sandbox"])
def test_labels_by_default(any_capsa: Capsa, images: dict[str, Path],
                           mount_mode: dict[str, str], key: str) -> None:
    result = any_capsa("inspect", str(images[key]), env=mount_mode)
    assert result.returncode == 0, result
    assert result.stdout == "".join(f"{k}: {LABELS[k]}\n" for k in sorted(LABELS))
    assert result.stderr == ""


def test_spython_json_shape(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("inspect", "-e", "-d", "-l", "-r", "-H", "-t", "--json",
                       str(images["sif"]))
    assert result.returncode == 0, result
    document = json.loads(result.stdout)
    assert document["type"] == "container"
    attributes = document["data"]["attributes"]
    assert attributes["labels"] == LABELS
    assert attributes["runscript"] == RUNSCRIPT.rstrip("\n")
    assert attributes["test"] == TEST_SCRIPT.rstrip("\n")
    assert attributes["helpfile"] == HELP.rstrip("\n")
    assert attributes["deffile"].startswith("Bootstrap: scratch")
    assert list(attributes["environment"]) == ["/.singularity.d/env/90-environment.sh"]
    assert result.stdout.startswith('{\n\t"data": {')


def test_text_sections(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("inspect", "--runscript", str(images["sif"]))
    assert result.stdout == RUNSCRIPT
    env = any_capsa("inspect", "-e", str(images["sif"]))
    assert env.stdout.startswith("=== /.singularity.d/env/90-environment.sh ===\n#!/bin/sh\n")


def test_run_help(any_capsa: Capsa, images: dict[str, Path],
                  mount_mode: dict[str, str]) -> None:
    result = any_capsa("run-help", str(images["sif"]), env=mount_mode)
    assert (result.returncode, result.stdout, result.stderr) == (0, HELP, "")


def test_inspect_bad_image(any_capsa: Capsa, scratch: Path) -> None:
    result = any_capsa("inspect", str(scratch / "missing.sif"))
    assert result.returncode == 255
    assert result.stderr.startswith("FATAL:   ")


def test_apps(any_capsa: Capsa, images: dict[str, Path]) -> None:
    sif = str(images["sif"])
    listed = any_capsa("inspect", "--list-apps", sif)
    assert listed.stdout == "hello\n", listed
    labels = any_capsa("inspect", "--app", "hello", sif)
    assert labels.stdout == "app: hello\n"
    helped = any_capsa("run-help", "--app", "hello", sif)
    assert helped.stdout == APP_HELP
    ran = any_capsa("run", "--app", "hello", sif, "x")
    assert (ran.returncode, ran.stdout) == (0, "hello app: x\n"), ran
    env = any_capsa("exec", "--app", "hello", sif, "sh", "-c", "echo $HELLO_APP")
    assert env.stdout == "yes\n"
    every = json.loads(any_capsa("inspect", "--all", sif).stdout)
    assert every["data"]["attributes"]["apps"]["hello"]["labels"] == {"app": "hello"}
