"""The one JSON loader for documents capsa did not write.

Registries, OCI layouts, archives, token servers and images hand over JSON
(manifests, indexes, configs, ``manifest.json``, labels, signatures).  A
hostile one must end in one :class:`FormatError`, never in an
``OverflowError`` (``"size": 1e400``), a ``RecursionError`` (ten thousand
nested arrays) or a giant allocation.  So every such document is loaded
here, with bounds on:

- its size (:data:`MAX_SIZE` unless the caller says less or more);
- its nesting (:data:`MAX_DEPTH` levels of arrays and objects);
- its numbers: integers within 64 bits, floats finite, no ``NaN`` or
  ``Infinity`` (Python's parser accepts both; JSON has neither).

Not on the exec path (``json`` is not imported there).
"""

from __future__ import annotations

import json
import math
import os
import stat
from typing import Any

from capsa.errors import FormatError

MAX_SIZE = 4 << 20  # manifests, indexes and configs are small
MAX_DEPTH = 64
MAX_INT = (1 << 63) - 1


def load(data: bytes | str, what: str, *, max_size: int = MAX_SIZE) -> Any:
    """*data* parsed, within the bounds above; :class:`FormatError` naming
    *what* otherwise."""
    if len(data) > max_size:
        raise FormatError(f"{what} is too large ({len(data)} bytes, at most {max_size})")
    try:
        doc = json.loads(data, parse_int=_integer, parse_float=_float,
                         parse_constant=_constant)
    except RecursionError:
        raise FormatError(f"{what} is nested too deeply") from None
    except _OutOfRange as err:
        raise FormatError(f"{what}: number {err} is out of range") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise FormatError(f"{what} is not valid JSON: {err}") from None
    if _depth(doc) > MAX_DEPTH:
        raise FormatError(f"{what} is nested too deeply (more than {MAX_DEPTH} levels)")
    return doc


def load_object(data: bytes | str, what: str, *, max_size: int = MAX_SIZE) -> dict[str, Any]:
    """Like :func:`load`, for a document that must be one JSON object."""
    doc = load(data, what, max_size=max_size)
    if not isinstance(doc, dict):
        raise FormatError(f"{what} is not a JSON object")
    return doc


def load_file(path: str | os.PathLike[str], what: str, *, max_size: int = MAX_SIZE) -> Any:
    """The JSON document in the regular file *path*."""
    return load(read_document(path, what, max_size), what, max_size=max_size)


def read_document(path: str | os.PathLike[str], what: str, max_size: int) -> bytes:
    """The bytes of the regular file *path*, at most *max_size* + 1 of them (a
    FIFO or a device is a FormatError, not a hang); FileNotFoundError passes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FormatError(f"{what}: {os.fspath(path)} is not a regular file")
        chunks = []
        left = max_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as err:
        raise FormatError(f"{what}: cannot read {os.fspath(path)}: {err.strerror}") from None
    finally:
        os.close(fd)


class _OutOfRange(Exception):
    """A number beyond what any field of these documents may hold."""


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise _OutOfRange(text[:24])
    value = int(text)
    if abs(value) > MAX_INT:
        raise _OutOfRange(text)
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(text[:24])
    return value


def _constant(text: str) -> float:
    raise _OutOfRange(text)


def _depth(doc: Any) -> int:
    """How deeply arrays and objects nest in *doc* (without recursion)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(doc, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        pending.extend((child, level + 1) for child in children)
    return deepest
