"""The container's init shows in ps as Apptainer's does (``appinit``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns

# PID 1 names itself once the command is started: wait (up to ~2 s) for it
_WAIT = ('i=0; while [ "$(cat /proc/1/comm)" != appinit ] && [ $i -lt 100 ]; '
         'do sleep 0.02; i=$((i+1)); done; ')


def test_pid_namespace_init_is_appinit(any_capsa: Capsa, images: dict[str, Path]) -> None:
    script = _WAIT + "cat /proc/1/comm; tr '\\0' '|' < /proc/1/cmdline; echo; " \
                     "ps -o pid,comm,args | grep '^ *1 '"
    result = any_capsa("exec", "--pid", str(images["sif"]), "sh", "-c", script)
    assert result.returncode == 0, result
    comm, cmdline, ps_line = result.stdout.splitlines()
    assert (comm, cmdline) == ("appinit", "appinit|"), result
    assert ps_line.split() == ["1", "appinit", "appinit"]
    assert result.stderr == ""


def test_no_init_keeps_the_command_as_pid_one(any_capsa: Capsa,
                                             images: dict[str, Path]) -> None:
    result = any_capsa("exec", "--pid", "--no-init", str(images["sif"]), "cat",
                       "/proc/1/comm")
    assert (result.returncode, result.stdout) == (0, "cat\n"), result
