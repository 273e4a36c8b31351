"""Parsing ``-B/--bind`` and ``--mount`` specifications as Apptainer does.

``-B`` takes comma-separated ``src[:dst[:opts]]`` items where ``\\,`` and
``\\:`` escape the separators; an option item after a comma (``ro``,
``rw``) belongs to the previous bind.  ``--mount`` takes Docker-style CSV
``type=bind,src=...,dst=...[,ro]``.
"""

from __future__ import annotations

import os

from capsa.errors import UsageError
from capsa.runtime.spec import BindSpec

_OPTIONS = ("ro", "rw")


def _split(text: str, sep: str) -> list[str]:
    """Split on *sep* except where it is backslash-escaped; keep other escapes."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in ",:":
            current.append(text[i:i + 2])
            i += 2
            continue
        if char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\:", ":")


def _is_option(item: str) -> bool:
    return item in _OPTIONS or item.startswith(("image-src=", "id="))


def split_bind_list(text: str) -> list[str]:
    """``"/a:/b:ro,/c"`` -> ``["/a:/b:ro", "/c"]``, options rejoined."""
    items: list[str] = []
    for item in _split(text, ","):
        if not item.strip():
            continue
        if items and _is_option(item):
            joiner = "," if len(_split(items[-1], ":")) == 3 else ":"
            items[-1] += joiner + item
        else:
            items.append(item.strip())
    return items


def parse_bind(item: str, cwd: str) -> BindSpec:
    """One ``src[:dst[:opts]]`` item."""
    fields = _split(item, ":")
    if len(fields) > 3:
        raise UsageError(f"invalid bind specification {item!r}: too many ':' separators")
    source = _unescape(fields[0])
    if not source:
        raise UsageError(f"invalid bind specification {item!r}: empty source")
    dest = source
    options = ""
    if len(fields) == 2 and all(_is_option(o) for o in fields[1].split(",")):
        options = fields[1]
    elif len(fields) >= 2:
        dest = _unescape(fields[1]) or source
        options = fields[2] if len(fields) == 3 else ""
    return BindSpec(os.path.normpath(os.path.join(cwd, source)), _check_dest(dest, item),
                    _readonly(options, item))


def _check_dest(dest: str, item: str) -> str:
    if not dest.startswith("/"):
        raise UsageError(f"invalid bind specification {item!r}: "
                         f"destination {dest} must be an absolute path")
    return os.path.normpath(dest)


def _readonly(options: str, item: str) -> bool:
    readonly = False
    for option in filter(None, options.split(",")):
        if option == "ro":
            readonly = True
        elif option == "rw":
            readonly = False
        elif option.startswith(("image-src=", "id=")):
            raise UsageError(f"bind option {option.split('=')[0]} is not supported: {item!r}")
        else:
            raise UsageError(f"invalid bind specification {item!r}: unknown option {option!r}")
    return readonly


def parse_binds(values: list[str], cwd: str) -> list[BindSpec]:
    """All ``-B`` values (each possibly a comma list), in order."""
    return [parse_bind(item, cwd) for value in values for item in split_bind_list(value)]


_MOUNT_KEYS = {"src": "source", "source": "source", "dst": "dest", "destination": "dest",
               "target": "dest", "type": "type"}


def parse_mount(value: str, cwd: str) -> BindSpec:
    """One ``--mount type=bind,src=S,dst=D[,ro]`` (CSV, so fields may be quoted)."""
    import csv  # only when --mount is used

    fields = next(csv.reader([value]), [])
    seen: dict[str, str] = {}
    readonly = False
    for field_ in fields:
        key, _, val = field_.partition("=")
        key = key.strip().lower()
        if key in ("ro", "readonly"):
            readonly = val.lower() not in ("false", "0")
        elif key in _MOUNT_KEYS:
            seen[_MOUNT_KEYS[key]] = val
        elif key not in ("bind-propagation", "nonested", "rw"):
            raise UsageError(f"invalid --mount specification {value!r}: unknown field {key!r}")
    if seen.get("type", "bind") != "bind":
        raise UsageError(f"invalid --mount specification {value!r}: only type=bind is supported")
    if "source" not in seen or "dest" not in seen:
        raise UsageError(f"invalid --mount specification {value!r}: "
                         "source and destination are required")
    source = os.path.normpath(os.path.join(cwd, seen["source"]))
    return BindSpec(source, _check_dest(seen["dest"], value), readonly)
