"""The signing policy through ``capsa exec``: by flag and by configuration file."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa
from support.images import build_all
from support.keys import write_keypair

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="module")
def signed_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from support.env import SCRATCH

    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    base = SCRATCH / f"policy-{os.getpid()}"
    images = build_all(base / "img")
    work = base / "work"
    work.mkdir(exist_ok=True)
    os.chmod(work, 0o755)
    private, public = write_keypair(work, "trusted")
    _, other_public = write_keypair(work, "other")
    unsigned = work / "unsigned.sif"
    signed = work / "signed.sif"
    shutil.copy(images["sif"], unsigned)
    shutil.copy(images["sif"], signed)
    for path in (unsigned, signed):
        path.chmod(0o644)
    yield {"signed": signed, "unsigned": unsigned, "private": private, "public": public,
           "other_public": other_public, "work": work}
    shutil.rmtree(base, ignore_errors=True)


def test_sign_then_exec_with_required_signature(
    capsa: Capsa, any_capsa: Capsa, signed_setup: dict[str, Path]
) -> None:
    s = signed_setup
    if b"Signature" not in capsa("sif", "list", str(s["signed"])).stdout.encode():
        capsa("sign", "--key", str(s["private"]), str(s["signed"]), check=True)
    ok = any_capsa("exec", "--require-signed", str(s["public"]), str(s["signed"]),
                   "echo", "trusted")
    assert ok.returncode == 0, ok
    assert ok.stdout == "trusted\n"
    assert ok.stderr == ""


@pytest.mark.parametrize("which", ["unsigned", "other-key"])
def test_exec_refuses_images_the_policy_rejects(
    capsa: Capsa, any_capsa: Capsa, signed_setup: dict[str, Path], which: str
) -> None:
    s = signed_setup
    if which == "unsigned":
        image, keyring = s["unsigned"], s["public"]
    else:
        if b"Signature" not in capsa("sif", "list", str(s["signed"])).stdout.encode():
            capsa("sign", "--key", str(s["private"]), str(s["signed"]), check=True)
        image, keyring = s["signed"], s["other_public"]
    result = any_capsa("exec", "--require-signed", str(keyring), str(image), "echo", "no")
    assert result.returncode == 255, result
    assert result.stdout == ""
    assert result.stderr.startswith("FATAL:   ")
    assert "is not signed by a key in" in result.stderr
    assert "Traceback" not in result.stderr


def test_configuration_file_requires_signatures(
    any_capsa: Capsa, signed_setup: dict[str, Path]
) -> None:
    s = signed_setup
    conf = s["work"] / "capsa.conf"
    conf.write_text(f"require signed images = yes\nsignature keyring = {s['public']}\n")
    conf.chmod(0o644)
    result = any_capsa("-c", str(conf), "exec", str(s["unsigned"]), "true")
    assert result.returncode == 255, result
    assert "is not signed by a key in" in result.stderr
    relaxed = s["work"] / "relaxed.conf"
    relaxed.write_text("require signed images = no\n")
    relaxed.chmod(0o644)
    result = any_capsa("-c", str(relaxed), "exec", str(s["unsigned"]), "true")
    assert result.returncode == 0, result
