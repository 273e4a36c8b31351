"""The ``/.singularity.d`` tree Apptainer adds to an OCI image, as tar entries.

What goes in (the files a runtime reads later): the action scripts, the base
environment scripts, ``env/10-docker2singularity.sh`` from the image's ``Env``
(``export K="${K:-v}"`` so a host value wins, except ``PATH``), a runscript
that runs ``ENTRYPOINT``/``CMD`` as Apptainer's does (eval by default, exact
arguments with ``APPTAINER_NO_EVAL``), ``labels.json``, the legacy symlinks,
and the base directories with empty ``/etc/hosts`` and ``/etc/resolv.conf``.

:func:`metadata_entries` override whatever the layers hold there;
:func:`base_entries` only fill in what the layers lack.
"""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from capsa.rootfs.layers import SyntheticEntry

_SOURCE_ENV = """\
for script in /.singularity.d/env/*.sh; do
    if [ -f "$script" ]; then
        . "$script"
    fi
done
"""

EXEC_ACTION = f"#!/bin/sh\n\n{_SOURCE_ENV}\nexec \"$@\"\n"

RUN_ACTION = f"""#!/bin/sh

{_SOURCE_ENV}
if test -n "${{APPTAINER_APPNAME:-}}"; then
    for app in "${{APPTAINER_APPNAME}}" singularity; do
        if test -x "/scif/apps/$app/scif/runscript"; then
            exec "/scif/apps/$app/scif/runscript" "$@"
        fi
    done
    echo "No Apptainer runscript for contained app: ${{APPTAINER_APPNAME}}"
    exit 1
elif test -x /.singularity.d/runscript; then
    exec /.singularity.d/runscript "$@"
else
    echo "No Apptainer runscript found, executing /bin/sh"
    exec /bin/sh "$@"
fi
"""

SHELL_ACTION = f"""#!/bin/sh

{_SOURCE_ENV}
if test -n "${{APPTAINER_SHELL:-}}" -a -x "${{APPTAINER_SHELL:-}}"; then
    exec $APPTAINER_SHELL "$@"
    echo "ERROR: Failed running shell as defined by '\\$APPTAINER_SHELL'" 1>&2
    exit 1
elif test -x /bin/bash; then
    SHELL=/bin/bash
    PS1="Apptainer $APPTAINER_NAME:\\\\w> "
    export SHELL PS1
    exec /bin/bash --norc "$@"
elif test -x /bin/sh; then
    SHELL=/bin/sh
    export SHELL
    exec /bin/sh "$@"
else
    echo "ERROR: /bin/sh does not exist in container" 1>&2
fi
exit 1
"""

START_ACTION = f"""#!/bin/sh

# tell the instance's PID 1 to go on
kill -CONT 1

{_SOURCE_ENV}
if test -x /.singularity.d/startscript; then
    exec /.singularity.d/startscript
fi
"""

TEST_ACTION = f"""#!/bin/sh

{_SOURCE_ENV}
if test -n "${{APPTAINER_APPNAME:-}}"; then
    for app in "${{APPTAINER_APPNAME}}" singularity; do
        if test -x "/scif/apps/$app/scif/test"; then
            exec "/scif/apps/$app/scif/test" "$@"
        fi
    done
    echo "No tests for contained app: ${{APPTAINER_APPNAME}}"
    exit 1
elif test -x /.singularity.d/test; then
    exec /.singularity.d/test "$@"
else
    echo "No test found in container, executing /bin/sh -c true"
    exec /bin/sh -c true
fi
"""

BASE_ENV = "#!/bin/sh\n# Base environment: nothing to set.\n"

ENVIRONMENT_ENV = "#!/bin/sh\n# Custom environment shell code should follow\n\n"

APPS_ENV = """#!/bin/sh
# SCIF apps: put the selected app's bin and lib first and load its environment.
if test -n "${APPTAINER_APPNAME:-}"; then
    export APPTAINER_APPNAME
    if test -d "/scif/apps/${APPTAINER_APPNAME}/"; then
        SCIF_APPS="/scif/apps"
        SCIF_APPROOT="/scif/apps/${APPTAINER_APPNAME}"
        export SCIF_APPROOT SCIF_APPS
        PATH="$SCIF_APPROOT:/scif/apps/singularity:$PATH"
        if test -d "$SCIF_APPROOT/bin"; then
            PATH="$SCIF_APPROOT/bin:$PATH"
        fi
        if test -d "$SCIF_APPROOT/lib"; then
            LD_LIBRARY_PATH="$SCIF_APPROOT/lib:${LD_LIBRARY_PATH:-}"
            export LD_LIBRARY_PATH
        fi
        for env in 01-base.sh 90-environment.sh; do
            if [ -f "$SCIF_APPROOT/scif/env/$env" ]; then
                . "$SCIF_APPROOT/scif/env/$env"
            fi
        done
        export PATH
    else
        echo "Could not locate the container application: ${APPTAINER_APPNAME}"
        exit 1
    fi
fi
"""

BASE99_ENV = """#!/bin/sh
# Libraries bound in by the runtime (GPU drivers) come last on the search path.
if [ -z "${LD_LIBRARY_PATH:-}" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi
PS1="Apptainer> "
export LD_LIBRARY_PATH PS1
"""

RUNTIMEVARS_ENV = """#!/bin/sh
# PATH as the user asked for it with APPTAINERENV_{PREPEND_,APPEND_,}PATH.
if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PREPEND_PATH}:${PATH}"
fi
if [ -n "${SING_USER_DEFINED_APPEND_PATH:-}" ]; then
    PATH="${PATH}:${SING_USER_DEFINED_APPEND_PATH}"
fi
if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PATH}"
fi
unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH SING_USER_DEFINED_PATH
export PATH
"""

STARTSCRIPT = "#!/bin/sh\n"

# The OCI runscript: Apptainer evaluates ENTRYPOINT/CMD/arguments through the
# shell by default; APPTAINER_NO_EVAL (or SINGULARITY_NO_EVAL) keeps Docker's
# exact argument semantics.
_RUNSCRIPT_BODY = """
if [ -n "${APPTAINER_NO_EVAL:-}${SINGULARITY_NO_EVAL:-}" ]; then
    if [ $# -eq 0 ]; then
%(prepend_cmd)s    fi
%(prepend_ep)s    exec "$@"
fi

CMDLINE_ARGS=""
for arg in "$@"; do
    CMDLINE_ARGS="${CMDLINE_ARGS} \\"$arg\\""
done

if [ $# -gt 0 ]; then
    if [ -n "$OCI_ENTRYPOINT" ]; then
        SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${CMDLINE_ARGS}"
    else
        SINGULARITY_OCI_RUN="${CMDLINE_ARGS}"
    fi
else
    SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${OCI_CMD}"
fi

eval "set ${SINGULARITY_OCI_RUN}"
exec "$@"
"""


def single_quoted(text: str) -> str:
    """*text* as one single-quoted shell word."""
    return "'" + text.replace("'", "'\\''") + "'"


def _double_quote_escape(text: str) -> str:
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return text


def _args_quoted(args: Sequence[str]) -> str:
    """Arguments as double-quoted words (what ``eval "set ..."`` reads back)."""
    return " ".join(f'"{_double_quote_escape(arg)}"' for arg in args)


def _prepend(args: Sequence[str], indent: str) -> str:
    return "".join(f'{indent}set -- {single_quoted(arg)} "$@"\n' for arg in reversed(args))


def runscript(entrypoint: Sequence[str], cmd: Sequence[str]) -> str:
    """The runscript for an image with this ENTRYPOINT and CMD."""
    lines = ["#!/bin/sh\n"]
    lines.append(f"OCI_ENTRYPOINT={single_quoted(_args_quoted(entrypoint))}\n")
    lines.append(f"OCI_CMD={single_quoted(_args_quoted(cmd))}\n")
    body = _RUNSCRIPT_BODY % {
        "prepend_cmd": _prepend(cmd, "        ") or "        :\n",
        "prepend_ep": _prepend(entrypoint, "    "),
    }
    return "".join(lines) + body


def docker_env_script(env: Sequence[str]) -> str:
    """``10-docker2singularity.sh``: the image's ENV, host values winning but PATH."""
    lines = ["#!/bin/sh\n"]
    for item in env:
        name, sep, value = item.partition("=")
        if not name or not all(c.isalnum() or c == "_" for c in name):
            continue  # not a name a shell can export
        if not sep:
            lines.append(f'export {name}="${{{name}:-}}"\n')
        elif name == "PATH":
            lines.append(f'export PATH="{_double_quote_escape(value)}"\n')
        else:
            lines.append(f'export {name}="${{{name}:-"{_double_quote_escape(value)}"}}"\n')
    return "".join(lines)


def labels_json(labels: Mapping[str, str] | None) -> str:
    return json.dumps(dict(labels or {}), indent="\t", sort_keys=True)


def _info(name: str, kind: bytes, mode: int, mtime: int, size: int = 0,
          link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.size = size
    info.linkname = link
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _file(name: str, text: str, mode: int, mtime: int) -> SyntheticEntry:
    data = text.encode()
    return SyntheticEntry(_info(name, tarfile.REGTYPE, mode, mtime, len(data)), data)


def _dir(name: str, mtime: int) -> SyntheticEntry:
    return SyntheticEntry(_info(name, tarfile.DIRTYPE, 0o755, mtime))


def _symlink(name: str, target: str, mtime: int) -> SyntheticEntry:
    return SyntheticEntry(_info(name, tarfile.SYMTYPE, 0o777, mtime, link=target))


def build_labels(deffile: Mapping[str, str], arch: str, when: int) -> dict[str, str]:
    """The ``org.label-schema`` labels Apptainer's build adds to every image."""
    from capsa import __version__

    stamp = time.gmtime(when)
    date = time.strftime("%A_%d_%B_%Y_%H:%M:%S_UTC", stamp).replace("_0", "_")
    labels = {
        "org.label-schema.build-arch": arch,
        "org.label-schema.build-date": date,
        "org.label-schema.schema-version": "1.0",
        "org.label-schema.usage.apptainer.version": __version__,
    }
    for key, value in deffile.items():
        labels[f"org.label-schema.usage.singularity.deffile.{key}"] = value
    return labels


def metadata_entries(config: Mapping[str, Any], *, mtime: int | None = None,
                     deffile: Mapping[str, str] | None = None, arch: str = "",
                     ) -> list[SyntheticEntry]:
    """The ``/.singularity.d`` files for an image whose ``config`` object
    (the ``config`` member of the image configuration) is *config*;
    *deffile* is the header of the definition it was built from
    (``bootstrap``, ``from``), written as ``/.singularity.d/Singularity``."""
    when = int(time.time()) if mtime is None else mtime
    env = [str(e) for e in config.get("Env") or []]
    entrypoint = [str(a) for a in config.get("Entrypoint") or []]
    cmd = [str(a) for a in config.get("Cmd") or []]
    labels = build_labels(deffile or {}, arch, when) if arch else {}
    labels.update({str(k): str(v) for k, v in (config.get("Labels") or {}).items()})
    sd = ".singularity.d"
    files = {
        "actions/exec": EXEC_ACTION, "actions/run": RUN_ACTION,
        "actions/shell": SHELL_ACTION, "actions/start": START_ACTION,
        "actions/test": TEST_ACTION, "env/01-base.sh": BASE_ENV,
        "env/10-docker2singularity.sh": docker_env_script(env),
        "env/90-environment.sh": ENVIRONMENT_ENV, "env/95-apps.sh": APPS_ENV,
        "env/99-base.sh": BASE99_ENV, "env/99-runtimevars.sh": RUNTIMEVARS_ENV,
        "runscript": runscript(entrypoint, cmd), "startscript": STARTSCRIPT,
    }
    entries = [_dir(sd, when), *(_dir(f"{sd}/{d}", when) for d in ("actions", "env", "libs"))]
    entries += [_file(f"{sd}/{name}", text, 0o755, when) for name, text in files.items()]
    entries.append(_file(f"{sd}/labels.json", labels_json(labels), 0o644, when))
    if deffile:
        text = "".join(f"{key}: {value}\n" for key, value in deffile.items())
        entries.append(_file(f"{sd}/Singularity", text, 0o644, when))
    entries += [_file(f"etc/{name}", "", 0o644, when) for name in ("hosts", "resolv.conf")]
    return entries


def base_entries(*, mtime: int | None = None) -> list[SyntheticEntry]:
    """Base directories and legacy links, used only where the image has none."""
    when = int(time.time()) if mtime is None else mtime
    entries = [_dir(d, when) for d in
               ("dev", "proc", "sys", "tmp", "var", "var/tmp", "home", "root", "etc")]
    for name, target in (("apptainer", ".singularity.d/runscript"),
                         ("singularity", ".singularity.d/runscript"),
                         (".run", ".singularity.d/actions/run"),
                         (".exec", ".singularity.d/actions/exec"),
                         (".test", ".singularity.d/actions/test"),
                         (".shell", ".singularity.d/actions/shell"),
                         ("environment", ".singularity.d/env/90-environment.sh")):
        entries.append(_symlink(name, target, when))
    return entries
