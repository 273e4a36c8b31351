"""Definition file text -> :class:`~capsa.deffile.model.Definition`.

Apptainer's rules (``pkg/build/types/parser/deffile.go``):

- the text is cut into stages at every line that starts with ``Bootstrap:``
  (any case); a stage is a header, then sections;
- header lines are ``key: value`` with case-insensitive keys, ``#`` comments
  and ``\\`` continuations; an unknown key is an error;
- a section starts at a line whose first word begins with ``%``; its name is
  that word, lower-cased, and the rest of the line are its arguments; a
  repeated section is appended to; an unknown section is an error;
- ``{{ name }}`` placeholders are replaced first, from ``--build-arg`` values,
  then from ``%arguments`` defaults; a placeholder without a value is an
  error, and so are placeholders on comment lines left alone.

Pure: text in, data or :class:`~capsa.errors.FormatError` out.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

from capsa.deffile.model import (
    APP_SECTIONS,
    HEADER_KEYS,
    SCRIPT_SECTIONS,
    App,
    Definition,
    FileCopy,
    FilesSection,
    Script,
    Stage,
)
from capsa.errors import FormatError

_STAGE_START = re.compile(r"(?mi)^bootstrap:")
_PLACEHOLDER = re.compile(r"{{\s*(\w+)\s*}}")
_COMMENT_BEFORE = re.compile(r"\s*#(?!!)")  # match() anchors at the line start
_FILE_WORD = re.compile(r"\"([^\"]*)\"|'([^']*)'|(\S+)")
_NUMBERED_KEY = re.compile(r"^otherurl\d+$")


def parse(text: str, build_args: Mapping[str, str] | None = None) -> Definition:
    """Parse a whole definition file; *build_args* fill ``{{ name }}``."""
    if "\0" in text:
        raise FormatError("definition file contains a NUL byte")
    defaults = _argument_defaults(text)
    substituted, used = substitute(text, dict(build_args or {}), defaults)
    stages = tuple(stage for stage in (_parse_stage(chunk) for chunk in _split_stages(substituted))
                   if stage is not None)
    if not stages:
        raise FormatError("no stages found in definition file")
    return Definition(stages, text, substituted, frozenset(used))


def substitute(text: str, build_args: Mapping[str, str],
               defaults: Mapping[str, str]) -> tuple[str, set[str]]:
    """Replace ``{{ name }}`` outside comment lines; return the text and the
    names used."""
    out: list[str] = []
    used: set[str] = set()
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if _COMMENT_BEFORE.match(text, line_start, match.start()) is not None:
            continue
        name = match.group(1)
        value = build_args.get(name, defaults.get(name))
        if value is None:
            raise FormatError(f"build var {name} is not defined through either --build-arg "
                              "(--build-arg-file) or 'arguments' section")
        out.append(text[last:match.start()])
        out.append(value)
        used.add(name)
        last = match.end()
    out.append(text[last:])
    return "".join(out), used


def parse_assignments(body: str) -> dict[str, str]:
    """``k=v`` lines (``%arguments``, ``--build-arg-file``); ``#`` comments,
    matching quotes around a value removed."""
    values: dict[str, str] = {}
    for line in body.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise FormatError(f"invalid argument line {line!r}: expected name=value")
        values[key.strip()] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _argument_defaults(text: str) -> dict[str, str]:
    """The ``%arguments`` values of every stage, read before substitution."""
    defaults: dict[str, str] = {}
    for chunk in _split_stages(text):
        for name, _args, body in _sections(chunk)[1]:
            if name == "arguments":
                defaults.update(parse_assignments(body))
    return defaults


def _split_stages(text: str) -> list[str]:
    starts = [m.start() for m in _STAGE_START.finditer(text)]
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if text[a:b]]


def _lines(text: str) -> list[str]:
    return [line.removesuffix("\r") for line in text.split("\n")]


def _sections(chunk: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(header text, [(name, args, body)]) of one stage's text."""
    header: list[str] = []
    sections: list[tuple[str, str, list[str]]] = []
    for line in _lines(chunk):
        words = line.split(None, 1)
        if words and words[0].startswith("%"):
            name = words[0][1:].lower()
            sections.append((name, words[1].strip() if len(words) > 1 else "", []))
        elif sections:
            sections[-1][2].append(line)
        else:
            header.append(line)
    return "\n".join(header), [(n, a, "\n".join(b) + "\n") for n, a, b in sections]


def _parse_stage(chunk: str) -> Stage | None:
    header_text, sections = _sections(chunk)
    header = parse_header(header_text)
    if not header and not sections:
        return None  # only comments and blank lines: not a stage
    scripts: dict[str, Script] = {}
    files: list[FilesSection] = []
    apps: dict[str, dict[str, Script]] = {}
    invalid: list[str] = []
    for name, args, body in sections:
        if name == "files":
            _add_files(files, args, body)
        elif name in APP_SECTIONS:
            _add_app_section(apps, name, args, body)
        elif name in SCRIPT_SECTIONS:
            before = scripts.get(name, Script())
            scripts[name] = Script(before.body + body, args or before.args)
        elif name not in invalid:
            invalid.append(name)
    if invalid:
        raise FormatError(f"invalid section(s) specified: {', '.join(invalid)}")
    labels = parse_labels(scripts["labels"].body) if "labels" in scripts else ()
    return Stage(
        header=tuple(header.items()),
        scripts=tuple(scripts.items()),
        labels=labels,
        files=tuple(files),
        apps=tuple(App(name, tuple(parts.items())) for name, parts in apps.items()),
        raw=chunk,
    )


def parse_header(text: str) -> dict[str, str]:
    header: dict[str, str] = {}
    key_cont, value_cont = "", ""
    for raw_line in _lines(text):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            if key_cont:
                header[key_cont] = value_cont
                key_cont, value_cont = "", ""
            continue
        line = line.split("#", 1)[0]
        if key_cont:
            key, value = key_cont, value_cont + line.strip()
            key_cont, value_cont = "", ""
        else:
            name, sep, rest = line.partition(":")
            if not sep:
                raise FormatError(f"failed to parse deffile header: header key {name.strip()} "
                                  "had no val")
            key, value = name.strip().lower(), rest.strip()
        if value.endswith("\\"):
            key_cont, value_cont = key, value[:-1]
            continue
        if key not in HEADER_KEYS and not _NUMBERED_KEY.match(key):
            raise FormatError(f"failed to parse deffile header: invalid header keyword found: "
                              f"{key}")
        header[key] = value
    if key_cont:
        header[key_cont] = value_cont
    return header


def parse_labels(body: str) -> tuple[tuple[str, str], ...]:
    """``KEY value`` lines, split at the first space; later keys win."""
    labels: dict[str, str] = {}
    for line in body.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        labels[key.strip()] = value.strip()
    return tuple(labels.items())


def parse_files(body: str) -> tuple[FileCopy, ...]:
    copies: list[FileCopy] = []
    for line in body.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = [next(g for g in m.groups() if g is not None) for m in _FILE_WORD.finditer(line)]
        copies.append(FileCopy(words[0], words[1] if len(words) > 1 else ""))
    return tuple(copies)


def _add_files(files: list[FilesSection], args: str, body: str) -> None:
    copies = parse_files(body)
    words = args.split()
    if words and (words[0].lower() != "from" or len(words) != 2):
        raise FormatError(f"invalid %files arguments {args!r}: expected 'from <stage>'")
    for index, section in enumerate(files):
        if section.args == args:
            files[index] = FilesSection(args, section.copies + copies)
            return
    files.append(FilesSection(args, copies))


def _add_app_section(apps: dict[str, dict[str, Script]], name: str, args: str,
                     body: str) -> None:
    words = args.split(None, 1)
    if not words:
        raise FormatError(f"app section %{name}: could not be split into section name and "
                          "app name")
    parts = apps.setdefault(words[0], {})
    before = parts.get(name, Script())
    parts[name] = Script(before.body + body, words[1] if len(words) > 1 else before.args)


def check_buildable(definition: Definition) -> None:
    """Every stage names a bootstrap agent; stage names are unique; ``%files
    from`` names an earlier stage."""
    seen: list[str] = []
    for stage in definition.stages:
        if not stage.bootstrap:
            raise FormatError("invalid definition: a stage has no Bootstrap header")
        for section in stage.files:
            source = section.from_stage
            if source is not None and source not in seen:
                raise FormatError(f"%files from {source}: stage {source} was not found")
        if stage.name:
            if stage.name in seen:
                raise FormatError(f"stage name {stage.name} is used twice")
            seen.append(stage.name)
