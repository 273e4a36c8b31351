"""``--cpus``, ``--memory``, ``--pids-limit``... through a cgroup where the host
gives one (root: cgroup v1 or v2; users: a delegated cgroup v2), and otherwise
a warning that a terminal shows and a client reading stderr does not get."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.runtime.conftest import full_argv

from support.cli import Capsa
from support.strict import expected

pytestmark = pytest.mark.needs_userns

# Whether a user gets a cgroup is the host's configuration (delegation), not
# its installation: these skips stay skips in strict mode.
NO_CGROUP = "no cgroup for this user here (see test_warning_only_on_a_terminal)"
_V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
# cat a limit file of the container's own cgroup, v1 (controller hierarchy) or v2
_SHOW = ('show() { p=$(grep ":$1:" /proc/self/cgroup | cut -d: -f3); '
         'cat "/sys/fs/cgroup/$2$p/$3"; }; ')


def _usable(capsa: Capsa, images: dict[str, Path]) -> bool:
    """Can *capsa*'s user get a cgroup here (as capsa.runtime.cgroups decides)?"""
    probe = capsa("-v", "exec", "--pids-limit", "50", str(images["sif"]), "true")
    assert probe.returncode == 0, probe
    return "cannot use cgroups" not in probe.stderr


def _limit_lines(capsa: Capsa, image: Path, *flags: str) -> list[str]:
    if _V2:
        script = _SHOW + "show '' '' memory.max; show '' '' cpu.max; show '' '' pids.max"
    else:
        script = (_SHOW + "show memory memory memory.limit_in_bytes; "
                  "show cpu cpu cpu.cfs_quota_us; show pids pids pids.max")
    result = capsa("exec", *flags, str(image), "sh", "-c", script)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout.split()


def _leftover_cgroups() -> set[str]:
    found = set()
    for base in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{c}" for c in ("cpu", "memory", "pids"))):
        for root, dirs, _ in os.walk(base):
            found |= {f"{root}/{d}" for d in dirs if d.startswith("apptainer-")}
    return found


def test_limits_applied_where_the_host_allows(any_capsa: Capsa,
                                              images: dict[str, Path]) -> None:
    if not _usable(any_capsa, images):
        pytest.skip(expected(NO_CGROUP))
    before = _leftover_cgroups()
    lines = _limit_lines(any_capsa, images["sif"], "--memory", "64M", "--cpus", "0.5",
                         "--pids-limit", "20")
    if _V2:
        assert lines == ["67108864", "50000", "100000", "20"]
    else:
        assert lines == ["67108864", "50000", "20"]
    assert _leftover_cgroups() == before


def test_memory_limit_is_enforced(any_capsa: Capsa, images: dict[str, Path]) -> None:
    if not _usable(any_capsa, images):
        pytest.skip(expected(NO_CGROUP))
    grow = 'x=$(head -c 104857600 /dev/zero | tr "\\0" a); echo ${#x}'
    limited = any_capsa("exec", "--memory", "32M", "--memory-swap", "32M", "--pid",
                        str(images["sif"]), "sh", "-c", grow)
    assert limited.returncode in (137, 1), limited  # the OOM killer, or sh's fork failing
    assert limited.stdout != "104857600\n"
    free = any_capsa("exec", str(images["sif"]), "sh", "-c", grow)
    assert (free.returncode, free.stdout) == (0, "104857600\n"), free


def test_instance_limits_apply_to_its_processes(any_capsa: Capsa, images: dict[str, Path],
                                                scratch: Path) -> None:
    if not _usable(any_capsa, images):
        pytest.skip(expected(NO_CGROUP))
    any_capsa.user.own(scratch)
    env = {"APPTAINER_CONFIGDIR": str(scratch / "conf")}
    started = any_capsa("instance", "start", "--pids-limit", "30", str(images["sif"]),
                        "limited", env=env)
    assert started.returncode == 0, started
    try:
        controller, name = ("", "pids.max") if _V2 else ("pids", "pids.max")
        shown = any_capsa("exec", "--pids-limit", "5", "instance://limited", "sh", "-c",
                          _SHOW + f"show '{controller}' '{controller}' {name}", env=env)
        assert shown.stdout == "30\n", shown
        assert shown.stderr == ("WARNING: Resource limits & cgroups configuration are only "
                                "applied to instances at instance start.\n")
    finally:
        stopped = any_capsa("instance", "stop", "limited", env=env)
        assert stopped.returncode == 0, stopped


def test_warning_only_on_a_terminal(any_capsa: Capsa, images: dict[str, Path]) -> None:
    if _usable(any_capsa, images):
        pytest.skip(expected("this user gets a cgroup here: nothing to warn about"))
    sif = str(images["sif"])
    # spython's result is a string only while stderr stays empty
    quiet = any_capsa("exec", "--cpus", "1", "--memory", "1G", sif, "echo", "ok")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "ok\n", ""), quiet
    verbose = any_capsa("-v", "exec", "--cpus", "1", sif, "true")
    assert "resource limits (--cpus) are not applied: cannot use cgroups - " in verbose.stderr
    argv = full_argv(any_capsa, "exec", "--cpus", "1", "--memory", "1G", sif, "true")
    tty = subprocess.run(["script", "-qec", " ".join(f"'{a}'" for a in argv), "/dev/null"],
                         capture_output=True, text=True, timeout=120)
    assert tty.returncode == 0, tty
    warnings = [line for line in tty.stdout.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, tty.stdout
    assert "resource limits (--cpus, --memory) are not applied: cannot use cgroups - " \
        in warnings[0]


@pytest.mark.parametrize(("flags", "message"), [
    (("--cpus", "1000"), "FATAL:   cpus value must be in range 0.01 - "),
    (("--cpus", "lots"), "FATAL:   invalid cpus value"),
    (("--memory", "12X"), "FATAL:   invalid memory value: invalid size: '12X'"),
    (("--blkio-weight", "5"), "FATAL:   blkio-weight must be in range 10-1000"),
    (("--pids-limit", "-5"), "FATAL:   invalid pids-limit: -5"),
    (("--blkio-weight-device", "/etc/hostname:100"), "FATAL:   while examining device"),
])
def test_bad_values_are_fatal(any_capsa: Capsa, images: dict[str, Path], scratch: Path,
                              flags: tuple[str, ...], message: str) -> None:
    any_capsa.user.own(scratch)
    before = _leftover_cgroups()
    result = any_capsa("exec", *flags, str(images["sif"]), "touch", f"{scratch}/ran",
                       cwd=scratch)
    assert result.returncode == 255, result
    assert result.stderr.startswith(message), result
    assert list(scratch.iterdir()) == []
    assert _leftover_cgroups() == before
