"""Bad input: one FATAL line, Apptainer's exit code, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa


def _fatal(result_stderr: str) -> str:
    lines = result_stderr.splitlines()
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("FATAL:   ")
    return lines[0]


@pytest.mark.parametrize(("key", "message"), [
    ("missing", "no such file or directory"),
    ("not_image", "image format not recognized"),
    ("nopart_sif", "no root filesystem partition found"),
    ("other_arch_sif", "cannot run on"),
])
def test_bad_images(any_capsa: Capsa, images: dict[str, Path], scratch: Path,
                    key: str, message: str) -> None:
    (scratch / "not-an-image").write_text("hello\n")
    paths = {**images, "missing": scratch / "missing.sif",
             "not_image": scratch / "not-an-image"}
    result = any_capsa("exec", str(paths[key]), "true", env={"TMPDIR": str(scratch)})
    assert result.returncode == 255
    assert message in _fatal(result.stderr)
    assert sorted(p.name for p in scratch.iterdir()) == ["not-an-image"]


@pytest.mark.parametrize("args", [
    ["-B", "/tmp:relative"],
    ["-B", "/a:/b:ro:extra"],
    ["-B", "/does/not/exist:/x"],
    ["--pwd", "/does/not/exist"],
    ["--no-mount", "bogus"],
    ["--mount", "type=tmpfs,dst=/x"],
    ["--env", "NOEQUALS"],
    ["--env-file", "/does/not/exist"],
    ["--overlay", "/does/not/exist"],
])
def test_bad_options(any_capsa: Capsa, images: dict[str, Path], scratch: Path,
                     args: list[str]) -> None:
    result = any_capsa("exec", *args, str(images["sif"]), "true",
                       env={"TMPDIR": str(scratch)})
    assert result.returncode == 255, result
    _fatal(result.stderr)
    assert list(scratch.iterdir()) == []


def test_exec_needs_a_command(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", str(images["sif"]))
    assert result.returncode == 255
    _fatal(result.stderr)


def test_uri_images_are_refused_clearly(any_capsa: Capsa) -> None:
    result = any_capsa("exec", "bogus://example.invalid/x:1", "true")
    assert result.returncode == 255
    _fatal(result.stderr)
