"""Environment variables that stand in for flags: one table, one rule.

As Apptainer does (``pkg/cmdline``), a flag the command line left unset takes
the value of ``APPTAINER_<KEY>``, else of the deprecated ``SINGULARITY_<KEY>``
(with an INFO line saying which is preferred; a WARNING when both are set
and differ), for each of the flag's keys in order.  A value of spaces only
counts as unset.  Booleans follow Go's ``strconv.ParseBool``, Apptainer's
rule: ``1 t T TRUE true True`` and ``0 f F FALSE false False``; anything
else is a usage error naming the variable.  List flags (``--bind``,
``--mount``...) get the variable's value added after their own.

This module and :mod:`capsa.cli.main` (the global flags) are where the CLI
reads the environment for options; the library reads none (it gets a request).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from capsa.errors import UsageError
from capsa.record import Record

PREFIXES = ("APPTAINER_", "SINGULARITY_")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

# How a value reaches the flag.
BOOL = "bool"        # store_true flags
VALUE = "value"      # a single value
LIST = "list"        # a list flag: the value (comma-separated items) after the flag's own
ITEMS = "items"      # a list flag: the value as one item after the flag's own (-B a,b)
LINES = "lines"      # a list flag: one item per line (--mount's CSV specs)


class EnvFlag(Record):
    """A flag (argparse ``dest``) that the keys ``APPTAINER_<key>`` can set."""

    dest: str
    keys: tuple[str, ...]
    how: str = BOOL
    without_prefix: bool = False  # also the bare key (DOCKER_USERNAME)


def _flags(how: str, *pairs: tuple[str, tuple[str, ...]]) -> tuple[EnvFlag, ...]:
    return tuple(EnvFlag(dest, keys, how) for dest, keys in pairs)


# Registry access, for every command that pulls (cmd/internal/cli/apptainer.go).
REGISTRY = (
    EnvFlag("no_https", ("NOHTTPS", "NO_HTTPS")),
    EnvFlag("docker_login", ("DOCKER_LOGIN",)),
    EnvFlag("authfile", ("AUTH_FILE",), VALUE),
    EnvFlag("docker_username", ("DOCKER_USERNAME",), VALUE, without_prefix=True),
    EnvFlag("docker_password", ("DOCKER_PASSWORD",), VALUE, without_prefix=True),
)
# pull's and build's --force (apptainer.go); their --tmpdir and its variables
# are capsa.scratch's rule (the runtime's sessions follow it too).
WRITERS = (EnvFlag("force", ("FORCE",)),)

# exec, run, shell, test, instance start|run (cmd/internal/cli/action_flags.go).
ACTIONS = (
    *_flags(BOOL, ("fakeroot", ("FAKEROOT",)), ("cleanenv", ("CLEANENV",)),
            ("compat", ("COMPAT",)), ("contain", ("CONTAIN",)),
            ("containall", ("CONTAINALL",)), ("nv", ("NV",)), ("nvccli", ("NVCCLI",)),
            ("rocm", ("ROCM",)), ("writable", ("WRITABLE",)),
            ("disable_cache", ("DISABLE_CACHE",)),
            ("writable_tmpfs", ("WRITABLE_TMPFS",)), ("no_home", ("NO_HOME",)),
            ("no_init", ("NOSHIMINIT",)), ("pid", ("PID", "UNSHARE_PID")),
            ("ipc", ("IPC", "UNSHARE_IPC")), ("net", ("NET", "UNSHARE_NET")),
            ("userns", ("USERNS", "UNSHARE_USERNS")), ("no_umask", ("NO_UMASK",)),
            ("no_eval", ("NO_EVAL",)), ("unsquash", ("UNSQUASH",)),
            ("oom_kill_disable", ("OOM_KILL_DISABLE",)),
            ("ignore_subuid", ("IGNORE_SUBUID",)),
            ("ignore_fakeroot_command", ("IGNORE_FAKEROOT_COMMAND",)),
            ("sharens", ("SHARENS",))),
    *_flags(VALUE, ("app", ("APP", "APPNAME")), ("home", ("HOME",)),
            ("workdir", ("WORKDIR",)), ("shell", ("SHELL",)),
            ("pwd", ("PWD", "TARGET_PWD", "CWD", "TARGET_CWD")),
            ("hostname", ("HOSTNAME",)), ("network", ("NETWORK",)),
            ("cpu_shares", ("CPU_SHARES",)), ("cpuset_cpus", ("CPUSET_CPUS",)),
            ("cpuset_mems", ("CPUSET_MEMS",)), ("memory", ("MEMORY",)),
            ("memory_reservation", ("MEMORY_RESERVATION",)),
            ("memory_swap", ("MEMORY_SWAP",)), ("pids_limit", ("PIDS_LIMIT",)),
            ("blkio_weight", ("BLKIO_WEIGHT",)), ("pid_file", ("PID_FILE",))),
    *_flags(ITEMS, ("bind", ("BIND", "BINDPATH"))),
    *_flags(LINES, ("mount", ("MOUNT",))),
    *_flags(LIST, ("overlay", ("OVERLAY", "OVERLAYIMAGE")),
            ("scratch", ("SCRATCH", "SCRATCHDIR")), ("no_mount", ("NO_MOUNT",)),
            ("no_env", ("NOENV",)), ("env_file", ("ENV_FILE",)),
            ("network_args", ("NETWORK_ARGS",)),
            ("blkio_weight_device", ("BLKIO_WEIGHT_DEVICE",))),
    *REGISTRY,
)

# build (cmd/internal/cli/build.go).
BUILD = (
    *_flags(BOOL, ("sandbox", ("SANDBOX",)), ("update", ("UPDATE",)),
            ("notest", ("NOTEST",)), ("disable_cache", ("DISABLE_CACHE",)),
            ("fakeroot", ("FAKEROOT",)), ("fix_perms", ("FIXPERMS",)),
            ("nv", ("NV",)), ("rocm", ("ROCM",)), ("writable_tmpfs", ("WRITABLE_TMPFS",)),
            ("userns", ("USERNS",)), ("ignore_subuid", ("IGNORE_SUBUID",)),
            ("ignore_fakeroot_command", ("IGNORE_FAKEROOT_COMMAND",))),
    *_flags(VALUE, ("arch", ("BUILD_ARCH",)), ("arch_variant", ("BUILD_ARCH_VARIANT",)),
            ("mksquashfs_args", ("MKSQUASHFS_ARGS",))),
    *_flags(LIST, ("section", ("SECTION",))),
    *_flags(LINES, ("mount", ("MOUNT",))),
    *REGISTRY,
    *WRITERS,
)

# pull (cmd/internal/cli/pull.go).
PULL = (
    *_flags(BOOL, ("disable_cache", ("DISABLE_CACHE",)),
            ("allow_unsigned", ("ALLOW_UNSIGNED",))),
    *_flags(VALUE, ("arch", ("PULL_ARCH",)), ("arch_variant", ("PULL_ARCH_VARIANT",)),
            ("name", ("PULL_NAME",)), ("dir", ("PULLDIR", "PULLFOLDER")),
            ("mksquashfs_args", ("MKSQUASHFS_ARGS",))),
    *REGISTRY,
    *WRITERS,
)

# The global flags, before any command (cmd/internal/cli/apptainer.go).
GLOBAL = _flags(BOOL, ("debug", ("DEBUG",)), ("nocolor", ("NOCOLOR",)),
                ("silent", ("SILENT",)), ("quiet", ("QUIET",)), ("verbose", ("VERBOSE",)))

# registry login (cmd/internal/cli/registry.go).
LOGIN = (*_flags(VALUE, ("username", ("LOGIN_USERNAME",)), ("password", ("LOGIN_PASSWORD",))),
         *REGISTRY)

TABLES: dict[str, tuple[EnvFlag, ...]] = {
    "exec": ACTIONS, "run": ACTIONS, "shell": ACTIONS, "test": ACTIONS, "instance": ACTIONS,
    "build": BUILD, "pull": PULL, "push": REGISTRY, "registry": LOGIN,
}


def apply(args: argparse.Namespace, command: str,
          environ: Mapping[str, str] | None = None) -> None:
    """Give *args*' unset flags of *command* their environment values."""
    environ = os.environ if environ is None else environ
    if command == "instance" and getattr(args, "action", None) not in ("start", "run"):
        return  # list/stop/stats have flags of their own
    for flag in TABLES.get(command, ()):
        if not hasattr(args, flag.dest):
            continue
        found = lookup(environ, flag.keys, without_prefix=flag.without_prefix)
        if found is not None:
            _set(args, flag, *found)


def lookup(environ: Mapping[str, str], keys: tuple[str, ...], *,
           without_prefix: bool = False) -> tuple[str, str] | None:
    """(variable, value) of the first of *keys* set, with Apptainer's
    precedence of prefixes; None if none is."""
    from capsa.cli import log

    for key in keys:
        first, legacy = (environ.get(prefix + key, "").strip() for prefix in PREFIXES)
        if first:
            if legacy and legacy != first:
                log.warning(f"{PREFIXES[1]}{key} and {PREFIXES[0]}{key} have different "
                            "values, using the latter")
            return PREFIXES[0] + key, first
        if legacy:
            log.info(f"Environment variable {PREFIXES[1]}{key} is set, but "
                     f"{PREFIXES[0]}{key} is preferred")
            return PREFIXES[1] + key, legacy
        if without_prefix and environ.get(key, "").strip():
            return key, environ[key].strip()
    return None


def truth(variable: str, value: str) -> bool:
    """Go's ``strconv.ParseBool``, as Apptainer reads boolean variables."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"While parsing environment variables: {variable}={value!r} is not a "
                     "boolean (1, t, true or 0, f, false)")


def flag(environ: Mapping[str, str], key: str) -> bool:
    """A boolean variable (``APPTAINER_<key>``) that no flag stands for."""
    found = lookup(environ, (key,))
    return truth(*found) if found is not None else False


def value(environ: Mapping[str, str], key: str) -> str | None:
    """A string variable (``APPTAINER_<key>``) that no flag stands for."""
    found = lookup(environ, (key,))
    return found[1] if found is not None else None


def _set(args: argparse.Namespace, entry: EnvFlag, variable: str, text: str) -> None:
    current = getattr(args, entry.dest)
    if entry.how == BOOL:
        if not current:
            setattr(args, entry.dest, truth(variable, text))
    elif entry.how == VALUE:
        if current in (None, ""):
            setattr(args, entry.dest, text)
    else:
        items = {ITEMS: [text], LINES: [line for line in text.splitlines() if line.strip()],
                 LIST: [item.strip() for item in text.split(",") if item.strip()]}[entry.how]
        setattr(args, entry.dest, [*(current or []), *items])
