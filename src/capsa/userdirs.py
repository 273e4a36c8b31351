"""Where the caller's own files live: the one place the library reads the
environment, and why.

Apptainer finds a user's configuration, keys, cache and scratch space
through the environment (``APPTAINER_CONFIGDIR``, ``APPTAINER_KEYSDIR``,
``APPTAINER_CACHEDIR``, ``APPTAINER_TMPDIR``..., and ``HOME``), whoever
calls it, a command line or a workflow engine's own process; so does capsa,
here and nowhere else in the library.  Every function takes the environment
as an argument (the process's by default), so a caller can hand in another.
Options are not read here: those are the CLI's (:mod:`capsa.cli.environment`).

On the exec path: ``os`` and ``pwd`` only.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

Environ = Mapping[str, str]


def _first(environ: Environ, *names: str) -> str | None:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


def home(environ: Environ | None = None) -> str:
    """``HOME``, else the password database's (clients such as Nextflow run
    capsa with an empty environment)."""
    environ = os.environ if environ is None else environ
    value = environ.get("HOME")
    if value:
        return value
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


def config_dir(environ: Environ | None = None) -> str:
    """``~/.apptainer``, or ``APPTAINER_CONFIGDIR`` (``SINGULARITY_CONFIGDIR``)."""
    environ = os.environ if environ is None else environ
    value = _first(environ, "APPTAINER_CONFIGDIR", "SINGULARITY_CONFIGDIR")
    return os.path.abspath(value) if value else os.path.join(home(environ), ".apptainer")


def keys_dir(environ: Environ | None = None) -> str:
    """The OpenPGP keyrings: ``APPTAINER_KEYSDIR``, else ``~/.apptainer/keys``."""
    environ = os.environ if environ is None else environ
    value = _first(environ, "APPTAINER_KEYSDIR", "SINGULARITY_KEYSDIR")
    return value or os.path.join(home(environ), ".apptainer", "keys")


def cache_root(environ: Environ | None = None) -> str:
    """``$APPTAINER_CACHEDIR/cache`` (``SINGULARITY_CACHEDIR``), else
    ``~/.apptainer/cache``."""
    environ = os.environ if environ is None else environ
    parent = _first(environ, "APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR")
    return os.path.join(parent or os.path.join(home(environ), ".apptainer"), "cache")


def scratch(environ: Environ | None = None, flag: str | None = None, *,
            existing_only: bool = False) -> str:
    """Scratch space by :func:`capsa.scratch.scratch_dir`'s rule."""
    from capsa.scratch import scratch_dir

    return scratch_dir(os.environ if environ is None else environ, flag,
                       existing_only=existing_only)
