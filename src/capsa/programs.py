"""The one program lookup: where the executable named *program* is.

Every "which program" of capsa comes here: the host's tools (squashfuse,
unsquashfs, debootstrap, newuidmap, fakeroot...), the GPU programs bound
into a container, and the command a container without a shell execs.  One
rule, Go's ``exec.LookPath`` as Apptainer uses it: a name with a slash is
taken as it is; any other name is the first executable regular file of
that name in the search path's absolute directories (relative entries such
as ``.`` or an empty one are skipped, as Go refuses what they find).  One
error: :class:`ToolError` with :func:`missing`'s message.

It imports neither :mod:`subprocess` nor :mod:`shutil`, so that the exec
path can use it (``tests/cli/test_import_budget.py``).
"""

from __future__ import annotations

import os

from capsa.errors import ToolError

# The search path when the process has none (Apptainer's default PATH).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find(program: str, path: str | None = None, *, root: str = "/") -> str | None:
    """Where *program* is, or ``None``.  *path*: the directories to search
    (default: this process's ``PATH``, else :data:`DEFAULT_PATH`); *root*:
    look as a host mounted at *root* would (the answer is then under
    *root*)."""
    for candidate in _candidates(program, path):
        if root not in ("", "/"):
            if not candidate.startswith("/"):
                continue
            candidate = os.path.join(root, candidate.lstrip("/"))
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require(program: str, path: str | None = None) -> str:
    """Where *program* is; :class:`ToolError` saying to install it otherwise."""
    found = find(program, path)
    if found is None:
        raise ToolError(missing(program))
    return found


def missing(program: str) -> str:
    """The one message for a program that is not there."""
    return f"{program} not found in PATH; please install it"


def _candidates(program: str, path: str | None) -> list[str]:
    if not program:
        return []
    if "/" in program:
        return [program]
    if path is None:
        # The process's own search path, as exec(3p) uses it.
        path = os.environ.get("PATH") or DEFAULT_PATH
    return [f"{directory.rstrip('/')}/{program}" for directory in path.split(":")
            if directory.startswith("/")]
