"""capsa.programs: the one program lookup, its one rule and its one error."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from capsa import programs
from capsa.errors import ToolError
from support.env import SRC


def _program(directory: Path, name: str, mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_first_executable_on_the_path(tmp_path: Path) -> None:
    _program(tmp_path / "a", "tool", 0o644)          # not executable: skipped
    (tmp_path / "b" / "tool").mkdir(parents=True)     # a directory: skipped
    wanted = _program(tmp_path / "c", "tool")
    _program(tmp_path / "d", "tool")
    path = ":".join(str(tmp_path / d) for d in "abcd")
    assert programs.find("tool", path) == str(wanted)


def test_relative_path_entries_are_skipped(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _program(tmp_path, "tool")
    monkeypatch.chdir(tmp_path)
    assert programs.find("tool", ".:bin:") is None


def test_a_name_with_a_slash_is_taken_as_it_is(tmp_path: Path) -> None:
    tool = _program(tmp_path, "tool")
    assert programs.find(str(tool), "/nonexistent") == str(tool)
    assert programs.find(str(tmp_path / "missing"), str(tmp_path)) is None


def test_under_a_root(tmp_path: Path) -> None:
    tool = _program(tmp_path / "usr" / "bin", "tool")
    assert programs.find("tool", "/usr/bin", root=str(tmp_path)) == str(tool)
    assert programs.find("/usr/bin/tool", "", root=str(tmp_path)) == str(tool)


def test_default_path_is_the_process_path(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _program(tmp_path, "capsa-test-tool")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert programs.find("capsa-test-tool") == str(tool)
    monkeypatch.delenv("PATH")
    assert programs.find("sh") in {f"{d}/sh" for d in programs.DEFAULT_PATH.split(":")}


def test_one_error_one_message() -> None:
    with pytest.raises(ToolError) as err:
        programs.require("capsa-no-such-tool")
    assert str(err.value) == "capsa-no-such-tool not found in PATH; please install it"
    assert programs.require("sh", os.defpath).endswith("/sh")


def _lookups(path: Path) -> list[str]:
    """Ways of finding a program by name other than capsa.programs."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "shutil" and node.attr == "which":
            found.append(f"{path.name}:{node.lineno}: shutil.which")
        elif isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in (
                "which", "find_program", "which_or_fail", "find"):
            found.append(f"{path.name}:{node.lineno}: def {node.name}")
    return found


def test_nothing_else_looks_programs_up() -> None:
    sources = sorted((SRC / "capsa").rglob("*.py"))
    found = [hit for path in sources if path.name != "programs.py"
             for hit in _lookups(path)]
    assert found == []
