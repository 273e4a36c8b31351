"""How capsa's long-lived processes appear in ``ps`` and ``pgrep``, as Apptainer's do.

Apptainer's container init is ``appinit`` (``sinit`` before Apptainer 1.1) and
an instance's monitor ``Apptainer instance: USER [NAME]``; site monitoring and
users' scripts look for them.  A Python process cannot exec itself under a
new name without starting again, so :func:`set_title` rewrites the memory
the kernel shows as ``/proc/PID/cmdline`` (the argv strings, through
``/proc/self/mem``) and ``/proc/PID/comm``.  It costs a few system calls,
and only these processes pay it.
"""

from __future__ import annotations

import os

from capsa import report

log = report.getLogger("capsa.runtime.proctitle")

INIT = "appinit"
INSTANCE_PREFIX = "Apptainer instance"
INSTANCE_COMM = "starter"  # the name Apptainer's instance process runs under


def instance_title(user: str, name: str) -> str:
    return f"{INSTANCE_PREFIX}: {user} [{name}]"


def set_title(title: str, comm: str) -> None:
    """Show *title* as this process's command line and *comm* as its name
    (both best effort: a process without ``/proc`` keeps its own)."""
    try:
        _set_cmdline(title)
        with open("/proc/self/comm", "w", encoding="utf-8") as handle:
            handle.write(comm[:15])
    except (OSError, ValueError, IndexError) as err:
        log.debug("could not set the process title: %s", err)


def _set_cmdline(title: str) -> None:
    with open("/proc/self/stat", "rb") as handle:
        raw = handle.read()
    fields = raw[raw.rfind(b")") + 2:].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (stat 48, 49)
    size = end - start
    if size < 2:
        return
    text = title.encode()[:size - 1]
    # The title, its NUL, then non-NUL padding up to a non-NUL last byte: the
    # kernel then shows the argv area up to the first NUL only, the title.
    data = text + b"\0" + b" " * (size - len(text) - 1)
    fd = os.open("/proc/self/mem", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, data, start)
    finally:
        os.close(fd)


__all__ = ["INIT", "instance_title", "set_title"]
