"""The definition file parser: Apptainer's rules, good and bad files, and
hypothesis (nothing but FormatError ever escapes)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsa.deffile.model import FileCopy, Script
from capsa.deffile.parser import check_buildable, parse, parse_assignments, substitute
from capsa.errors import FormatError

FULL = """\
# a comment before the header
BootStrap: docker
FROM: alpine:{{ TAG }}   # trailing comment
Registry: \\
  example.org

%arguments
    TAG=3.19
    WHO="the builder"
%setup
    touch ${APPTAINER_ROOTFS}/setup-ran
%files
    a.txt /opt/a.txt
    "with space.txt" /opt/b.txt
    lonely.txt
    # not a file
%post -c /bin/bash
    echo {{ WHO }}
    # {{ UNDEFINED_BUT_COMMENTED }}
%environment
    export A=1
%runscript
    exec echo "$@"
%startscript
    sleep 1
%test
    true
%labels
    Author Jane Doe
    Version 1.0
    # comment
%help
    Help text.
%apprun hello
    echo hi
%appenv hello
    export H=1
"""


def test_full_definition() -> None:
    definition = parse(FULL)
    assert len(definition.stages) == 1
    stage = definition.final
    assert stage.bootstrap == "docker"
    assert stage.get("From") == "alpine:3.19"
    assert stage.get("registry") == "example.org"
    assert stage.script("post").args == "-c /bin/bash"
    assert "echo the builder" in stage.script("post").body
    assert "{{ UNDEFINED_BUT_COMMENTED }}" in stage.script("post").body
    assert stage.script("environment").body.strip() == "export A=1"
    assert stage.labels == (("Author", "Jane Doe"), ("Version", "1.0"))
    assert stage.files[0].copies == (FileCopy("a.txt", "/opt/a.txt"),
                                     FileCopy("with space.txt", "/opt/b.txt"),
                                     FileCopy("lonely.txt", ""))
    assert stage.apps[0].name == "hello"
    assert "echo hi" in stage.apps[0].script("apprun").body
    assert definition.used_args == {"TAG", "WHO"}
    assert definition.raw == FULL
    check_buildable(definition)


def test_build_args_override_defaults() -> None:
    definition = parse(FULL, {"TAG": "edge"})
    assert definition.final.get("from") == "alpine:edge"


def test_missing_build_arg() -> None:
    with pytest.raises(FormatError, match="build var NOPE is not defined through either"):
        parse("Bootstrap: scratch\n%post\n  echo {{ NOPE }}\n")


def test_shebang_comment_is_substituted() -> None:
    text, used = substitute("%post\n#!/bin/{{ SH }}\n# {{ X }}\n", {"SH": "bash"}, {})
    assert text == "%post\n#!/bin/bash\n# {{ X }}\n"
    assert used == {"SH"}


def test_repeated_sections_are_appended() -> None:
    stage = parse("Bootstrap: scratch\n%post\n  one\n%post\n  two\n").final
    assert stage.script("post") == Script("  one\n  two\n\n", "")


def test_multi_stage() -> None:
    definition = parse("Bootstrap: docker\nFrom: a\nStage: build\n%post\n  make\n"
                       "bootstrap: localimage\nFrom: b.sif\nStage: final\n"
                       "%files from build\n  /out /opt/out\n")
    assert [s.name for s in definition.stages] == ["build", "final"]
    assert definition.final.files[0].from_stage == "build"
    check_buildable(definition)


def test_files_from_unknown_stage() -> None:
    definition = parse("Bootstrap: scratch\n%files from nowhere\n  /a\n")
    with pytest.raises(FormatError, match="stage nowhere was not found"):
        check_buildable(definition)


@pytest.mark.parametrize(("text", "message"), [
    ("Bootstrap: docker\nFrom: a\n%bogus\n  x\n", "invalid section(s) specified: bogus"),
    ("Bootstrap: docker\nColour: blue\n", "invalid header keyword found: colour"),
    ("Bootstrap docker\n", "header key Bootstrap docker had no val"),
    ("", "no stages found"),
    ("# only a comment\n\n", "no stages found"),
    ("Bootstrap: scratch\n%apprun\n  x\n", "could not be split into section name and app"),
    ("Bootstrap: scratch\n%files into x\n  a\n", "invalid %files arguments"),
    ("Bootstrap: a\0b\n", "NUL"),
])
def test_bad_definitions(text: str, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse(text)
    assert message in str(caught.value)


def test_stage_without_bootstrap_is_not_buildable() -> None:
    with pytest.raises(FormatError, match="no Bootstrap header"):
        check_buildable(parse("%post\n  echo\n"))


def test_numbered_header_keys() -> None:
    assert parse("Bootstrap: yum\nOtherURL1: http://x\n").final.get("otherurl1") == "http://x"


def test_assignments() -> None:
    assert parse_assignments("# c\nA=1\n B = 'two' \n\nC=\n") == {"A": "1", "B": "two", "C": ""}
    with pytest.raises(FormatError):
        parse_assignments("novalue\n")


_LINES = st.sampled_from([
    "Bootstrap: docker", "bootstrap: scratch", "From: x", "Stage: s", "%post", "%files",
    "%files from s", "%labels", "%apprun a", "%appenv", "%bogus", "  a b", "# c", "",
    "key", "x: y", "{{ A }}", "{{ B }}", "%arguments", "A=1", "%", "Include: \\", "\\",
    "\"quoted\" 'x", "%files from", "%test -c", "OtherURL9: u",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_LINES, st.text(max_size=20)), max_size=12),
       st.dictionaries(st.sampled_from(["A", "B", "C"]), st.text(max_size=5), max_size=3))
def test_parser_raises_only_format_error(lines: list[str], args: dict[str, str]) -> None:
    text = "\n".join(lines)
    try:
        definition = parse(text, args)
    except FormatError:
        return
    assert definition.stages
    with contextlib.suppress(FormatError):
        check_buildable(definition)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_on_arbitrary_text(text: str) -> None:
    with contextlib.suppress(FormatError):
        parse(text)
