"""The container's environment, built as Apptainer builds it.

Order (later wins): host variables that pass, the image's
``/.singularity.d/env/*.sh`` scripts, the injected variables
(``SINGULARITYENV_*`` < ``APPTAINERENV_*`` < ``--env-file`` < ``--env``),
then the PATH and LD_LIBRARY_PATH rules.  With a ``/bin/sh`` in the image
the scripts run in it (:func:`shell_script`); without one, a small, safe
parser of ``export K=V`` lines stands in (:func:`apply_env_script`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping

from capsa import report
from capsa.errors import NotFoundError, UsageError
from capsa.runtime.spec import DEFAULT_PATH, LIBS_DIR, ContainerSpec

log = report.getLogger("capsa.runtime.env")

_BLOCKED = ("PATH", "HOME", "LD_LIBRARY_PATH")
_BLOCKED_PREFIXES = ("APPTAINER_", "SINGULARITY_", "APPTAINERENV_", "SINGULARITYENV_")
_PROXIES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ftp_proxy")
# What a rank needs from its launcher (Slurm, PMIx, PMI, Open MPI): kept by
# --cleanenv too, or MPI programs cannot find their launcher.  (Apptainer's
# --cleanenv drops them; capsa keeps them on purpose, see the README.)
_LAUNCHER_PREFIXES = ("SLURM_", "PMIX_", "PMI_", "OMPI_")
# Injected names that steer PATH / LD_LIBRARY_PATH instead of being set.
_PATH_KEYS = ("PREPEND_PATH", "APPEND_PATH", "PREPEND_LD_LIBRARY_PATH",
              "APPEND_LD_LIBRARY_PATH")


def host_passthrough(environ: Mapping[str, str], *, cleanenv: bool,
                     blocked: Iterable[str] = ()) -> dict[str, str]:
    """The host variables that enter the container (minus ``--no-env`` names)."""
    if blocked:
        environ = {k: v for k, v in environ.items() if k not in set(blocked)}
    if cleanenv:
        kept = {k: v for k, v in environ.items()
                if k == "TERM" or k.lower() in _PROXIES or k.startswith(_LAUNCHER_PREFIXES)}
        kept["LANG"] = "C"
        return kept
    return {k: v for k, v in environ.items()
            if k not in _BLOCKED and not k.startswith(_BLOCKED_PREFIXES)}


def injected(environ: Mapping[str, str], env_files: Iterable[str],
             env_flags: Iterable[str]) -> dict[str, str]:
    """Variables forced inside: ``*ENV_*`` prefixes, ``--env-file``, ``--env``."""
    result: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("SINGULARITYENV_") and len(key) > 15:
            name = key[15:]
            if f"APPTAINERENV_{name}" in environ:
                log.warning("Skipping environment variable [%s=%s], %s is already "
                            "overridden with APPTAINERENV_%s", key, value, name, name)
                continue
            result[name] = value
    for key, value in environ.items():
        if key.startswith("APPTAINERENV_") and len(key) > 13:
            result[key[13:]] = value
    for path in env_files:
        result.update(read_env_file(path))
    for flag in env_flags:
        for item in _split_env_flag(flag):
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise UsageError(f"invalid --env value {item!r}: expected NAME=VALUE")
            result[name] = value
    if "HOME" in result:
        log.warning("Overriding HOME environment variable with APPTAINERENV_HOME "
                    "is not permitted")
        del result["HOME"]
    return result


def _split_env_flag(flag: str) -> list[str]:
    """``--env A=1,B=2`` -> two items; a comma inside a value stays when the next
    piece has no ``=``."""
    items: list[str] = []
    for piece in flag.split(","):
        if items and "=" not in piece:
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items


def read_env_file(path: str) -> dict[str, str]:
    """``--env-file``: ``K=V`` / ``export K=V`` lines, ``#`` comments."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError as err:
        raise NotFoundError(f"while processing {path}: no such file or directory") from err
    except OSError as err:
        raise UsageError(f"while processing {path}: {err.strerror}") from err
    values: dict[str, str] = {}
    apply_env_script(text, values)
    return values


def base_env(host: Mapping[str, str], *, home: str, image_ref: str, action: str,
             binds: str, app: str | None = None) -> dict[str, str]:
    """What the env scripts start from (host variables, then Apptainer's own;
    ``APPTAINER_APPNAME`` makes the image's ``95-apps.sh`` load the app)."""
    env = dict(host)
    env["HOME"] = home
    env["PATH"] = DEFAULT_PATH
    env["PS1"] = "Apptainer> "
    name = os.path.basename(image_ref.rstrip("/"))
    for prefix in ("APPTAINER_", "SINGULARITY_"):
        env[prefix + "CONTAINER"] = image_ref
        env[prefix + "NAME"] = name
        env[prefix + "COMMAND"] = action
        env[prefix + "ENVIRONMENT"] = "/.singularity.d/env/91-environment.sh"
        if binds:
            env[prefix + "BIND"] = binds
        if app:
            env[prefix + "APPNAME"] = app
    return env


def container_env(spec: ContainerSpec, cwd: str) -> dict[str, str]:
    """:func:`base_env` for *spec*, running in *cwd* inside (``PWD`` is the
    container's working directory, never the host's), with its GPU's variables."""
    env = base_env(dict(spec.environment.host), home=spec.mounts.home_dest,
                   image_ref=spec.environment.image_ref, action=spec.process.action,
                   binds=",".join(b.dest for b in spec.mounts.binds), app=spec.process.app)
    env["PWD"] = cwd
    if spec.gpu is not None:
        env.update(spec.gpu.env)
    return env


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def env_script_paths(root: str, app: str | None) -> list[str]:
    """The env scripts to source, in order, as paths inside the container."""
    found: list[str] = []
    for directory in ("/.singularity.d/env",
                      *( [f"/scif/apps/{app}/scif/env"] if app else [])):
        try:
            names = sorted(os.listdir(root + directory))
        except OSError:
            continue
        found.extend(f"{directory}/{n}" for n in names if n.endswith(".sh"))
    return found


def shell_script(scripts: Iterable[str], forced: Mapping[str, str], action: str, *,
                 evaluate: bool = True) -> str:
    """``/bin/sh -c`` text: source *scripts*, force *forced*, apply the PATH
    rules, then run *action* (shell text using ``"$@"``).

    With *evaluate* (Apptainer's default, off with ``--no-eval``) injected
    values may refer to variables (``APPTAINERENV_LD_LIBRARY_PATH=
    '$LD_LIBRARY_PATH:/opt/lib'``); nothing else in them is interpreted.
    """
    word = _expandable if evaluate else _quote
    lines = [f'[ -f {_quote(s)} ] && . {_quote(s)}' for s in scripts]
    for key, value in forced.items():
        if key in ("PATH", "LD_LIBRARY_PATH", *_PATH_KEYS) or not _valid_name(key):
            continue
        lines.append(f"export {key}={word(value)}")
    if "PATH" in forced:
        lines.append(f"PATH={word(forced['PATH'])}")
    if "PREPEND_PATH" in forced:
        lines.append(f'PATH={word(forced["PREPEND_PATH"])}:"$PATH"')
    if "APPEND_PATH" in forced:
        lines.append(f'PATH="$PATH":{word(forced["APPEND_PATH"])}')
    lines.append("export PATH")
    lines.append(_ld_library_path_line(forced, word))
    lines.append(action)
    return "\n".join(lines)


_REFERENCE_PATTERN = r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}\"`$\\]*)?\})"


def reference_regex() -> re.Pattern[str]:
    """``$NAME``, ``${NAME}``, ``${NAME:-word}`` (compiled on first use: most
    runs inject nothing)."""
    return re.compile(_REFERENCE_PATTERN)  # re caches compiled patterns


def _expandable(value: str) -> str:
    """*value* double-quoted so that only ``$NAME``, ``${NAME}`` and
    ``${NAME:-word}`` expand: no command substitution, no other escapes."""
    out = ['"']
    i = 0
    pattern = reference_regex()
    while i < len(value):
        match = pattern.match(value, i) if value[i] == "$" else None
        if match:
            out.append(match.group(0))
            i = match.end()
            continue
        out.append("\\" + value[i] if value[i] in '$`"\\' else value[i])
        i += 1
    out.append('"')
    return "".join(out)


def _ld_library_path_line(forced: Mapping[str, str], word: Callable[[str], str]) -> str:
    parts: list[str] = []
    if "PREPEND_LD_LIBRARY_PATH" in forced:
        parts.append(word(forced["PREPEND_LD_LIBRARY_PATH"]))
    if "LD_LIBRARY_PATH" in forced:
        parts.append(word(forced["LD_LIBRARY_PATH"]))
    else:
        parts.append('"$LD_LIBRARY_PATH"')
    if "APPEND_LD_LIBRARY_PATH" in forced:
        parts.append(word(forced["APPEND_LD_LIBRARY_PATH"]))
    joined = ":".join(parts)
    return (f'LD_LIBRARY_PATH={joined}\n'
            f'case ":$LD_LIBRARY_PATH:" in *:{LIBS_DIR}:*) ;; '
            f'*) LD_LIBRARY_PATH="$LD_LIBRARY_PATH:{LIBS_DIR}" ;; esac\n'
            'LD_LIBRARY_PATH="${LD_LIBRARY_PATH#:}"; LD_LIBRARY_PATH="${LD_LIBRARY_PATH%:}"\n'
            'while case $LD_LIBRARY_PATH in *::*) true;; *) false;; esac; do '
            'LD_LIBRARY_PATH="${LD_LIBRARY_PATH%%::*}:${LD_LIBRARY_PATH#*::}"; done\n'
            "export LD_LIBRARY_PATH")


def final_env(env: dict[str, str], forced: Mapping[str, str], *,
              evaluate: bool = True) -> dict[str, str]:
    """The no-shell twin of the tail of :func:`shell_script`."""
    if evaluate:
        forced = {k: _expand(v.replace("\\", "\\\\"), env) for k, v in forced.items()}
    for key, value in forced.items():
        if key not in ("PATH", *_PATH_KEYS) and _valid_name(key):
            env[key] = value
    if "PATH" in forced:
        env["PATH"] = forced["PATH"]
    if "PREPEND_PATH" in forced:
        env["PATH"] = f"{forced['PREPEND_PATH']}:{env.get('PATH', '')}"
    if "APPEND_PATH" in forced:
        env["PATH"] = f"{env.get('PATH', '')}:{forced['APPEND_PATH']}"
    parts = [forced.get("PREPEND_LD_LIBRARY_PATH", ""), env.get("LD_LIBRARY_PATH", ""),
             forced.get("APPEND_LD_LIBRARY_PATH", "")]
    paths = [p for part in parts for p in part.split(":") if p]
    if LIBS_DIR not in paths:
        paths.append(LIBS_DIR)
    env["LD_LIBRARY_PATH"] = ":".join(paths)
    return env


def _valid_name(name: str) -> bool:
    return name.replace("_", "a").isalnum() and not name[0].isdigit()


# --- a safe stand-in for /bin/sh: assignments only -------------------------

def apply_env_script(text: str, env: dict[str, str]) -> None:
    """Apply the ``[export] K=V`` lines of *text* to *env*; ignore the rest.

    Values may be quoted; ``$VAR``, ``${VAR}`` and ``${VAR:-word}`` are
    expanded outside single quotes.  Nothing is ever executed.
    """
    for raw in text.split("\n"):  # the shell's lines: no other separators
        line = raw.strip(" \t\r")
        if line.startswith("export "):
            line = line[7:].lstrip()
        name, sep, rest = line.partition("=")
        if not sep or not name or not _valid_name(name):
            continue
        value = _parse_value(rest, env)
        if value is not None:
            env[name] = value


def _parse_value(text: str, env: Mapping[str, str]) -> str | None:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in " \t;":
            rest = text[i:].strip(" \t;")
            return "".join(out) if not rest or rest.startswith("#") else None
        if char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                return None
            out.append(text[i + 1:end])
            i = end + 1
        elif char == '"':
            end = _closing_quote(text, i + 1)
            if end < 0:
                return None
            out.append(_expand(text[i + 1:end], env))
            i = end + 1
        elif char == "$":
            expanded, i = _expand_one(text, i, env)
            out.append(expanded)
        elif char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char in "`()|&<>":
            return None
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _closing_quote(text: str, start: int) -> int:
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return -1


def _expand(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$":
            expanded, i = _expand_one(text, i, env)
            out.append(expanded)
        elif text[i] == "\\" and i + 1 < len(text) and text[i + 1] in '$"\\`':
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expand_one(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """Expand the ``$...`` at *i*; return (value, index after it)."""
    if text.startswith("${", i):
        end = text.find("}", i)
        if end < 0:
            return text[i:], len(text)
        inner = text[i + 2:end]
        name, sep, default = inner.partition(":-")
        value = env.get(name, "")
        return (value if value or not sep else _expand(default, env)), end + 1
    j = i + 1
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    if j == i + 1:
        return "$", j
    return env.get(text[i + 1:j], ""), j
