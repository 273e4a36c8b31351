"""The one loader for JSON capsa did not write: one FormatError for anything
hostile (giant numbers, deep nesting, huge documents, FIFOs), never another
exception."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsa import jsondoc
from capsa.errors import FormatError


def test_limits() -> None:
    with pytest.raises(FormatError, match="too large"):
        jsondoc.load(b" " * (jsondoc.MAX_SIZE + 1), "x")
    with pytest.raises(FormatError, match="not valid JSON"):
        jsondoc.load(b"{", "x")
    assert jsondoc.load_object(json.dumps({"a": 1}).encode(), "x") == {"a": 1}
    with pytest.raises(FormatError, match="not a JSON object"):
        jsondoc.load_object(b"[1]", "x")


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity",
                                    "99999999999999999999", "1" * 5000])
def test_numbers_beyond_any_field_are_refused(number: str) -> None:
    with pytest.raises(FormatError, match="out of range"):
        jsondoc.load(f'{{"size": {number}}}', "index")


def test_numbers_within_bounds() -> None:
    doc = jsondoc.load('{"a": 9223372036854775807, "b": -1.5e300, "c": 0}', "x")
    assert doc == {"a": (1 << 63) - 1, "b": -1.5e300, "c": 0}


@pytest.mark.parametrize("depth", [jsondoc.MAX_DEPTH + 1, 5000, 200_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    with pytest.raises(FormatError, match="nested too deeply"):
        jsondoc.load("[" * depth + "]" * depth, "index")
    with pytest.raises(FormatError, match="nested too deeply"):
        jsondoc.load('{"a":' * depth + "1" + "}" * depth, "index")


def test_nesting_within_bounds() -> None:
    depth = jsondoc.MAX_DEPTH
    assert jsondoc.load("[" * depth + "]" * depth, "x") is not None


def test_files(tmp_path: Path) -> None:
    good = tmp_path / "index.json"
    good.write_text('{"manifests": []}')
    assert jsondoc.load_file(good, "index") == {"manifests": []}
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="not a regular file"):
        jsondoc.load_file(fifo, "index")  # never blocks
    with pytest.raises(FormatError, match="not a regular file"):
        jsondoc.load_file(tmp_path, "index")
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b"0," * (jsondoc.MAX_SIZE // 2) + b"0]")
    with pytest.raises(FormatError, match="too large"):
        jsondoc.load_file(big, "index")
    with pytest.raises(FileNotFoundError):
        jsondoc.load_file(tmp_path / "absent", "index")


JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_value_or_one_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        jsondoc.load(data, "fuzz")


@settings(max_examples=200, deadline=None)
@given(JSON_TEXT, st.integers(0, 3), st.sampled_from(["1e400", "[" * 3000, "NaN", "-0"]))
def test_documents_with_hostile_parts(doc: object, at: int, junk: str) -> None:
    text = json.dumps(doc)
    spliced = text[:at] + junk + text[at:]
    with contextlib.suppress(FormatError):
        jsondoc.load(spliced, "fuzz")


def _json_parsing_calls(path: Path) -> list[str]:
    """``json.load``/``json.loads``/``JSONDecoder`` uses in one source file."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "json" and node.attr in ("load", "loads", "JSONDecoder"):
            found.append(f"{path.name}:{node.lineno}: json.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "json":
            found += [f"{path.name}:{node.lineno}: from json import {alias.name}"
                      for alias in node.names if alias.name in ("load", "loads", "JSONDecoder")]
    return found


def test_nothing_else_parses_json() -> None:
    """Every JSON document capsa reads goes through jsondoc (its bounds, its
    one error): no other module parses JSON its own way."""
    from support.env import SRC

    sources = sorted((SRC / "capsa").rglob("*.py"))
    found = [hit for path in sources if path.name != "jsondoc.py"
             for hit in _json_parsing_calls(path)]
    assert found == []
