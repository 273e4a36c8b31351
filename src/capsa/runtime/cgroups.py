"""Resource limits (``--cpus``, ``--memory``, ``--pids-limit``...) through cgroups.

Apptainer applies its limit flags through a cgroup made for the container;
so does capsa, through the cgroup filesystem, where the host allows it:

- **root**, outside a user namespace: cgroup v1 (a cgroup per controller,
  nested in the caller's) or v2 (beside the caller's cgroup);
- **a user**: cgroup v2 only, and only where the cgroup holding the caller
  has been delegated to the user (its parent directory is the user's), as
  in a ``systemd-run --user --scope`` or a batch job with delegation.
  Apptainer asks systemd for such a cgroup over D-Bus; capsa speaks no
  D-Bus, so elsewhere :func:`unusable_reason` says why not, and the CLI
  warns.

The cgroup is ``apptainer-<monitor pid>``.  The monitor joins it only
around the fork of the container's first process (:func:`enter`,
:func:`leave`), so the
container's processes are in it and the monitor, squashfuse and the
prefetch reader are not; :func:`remove` deletes it when the container has
ended.  Values are converted as runc converts Apptainer's (v1 numbers to v2
files).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from capsa import report
from capsa.errors import ContainerError, UsageError

log = report.getLogger("capsa.runtime.cgroups")

_ROOT = "/sys/fs/cgroup"
CPU_PERIOD = 100_000  # microseconds, Apptainer's (and the kernel's) default period


class Limits(NamedTuple):
    """The limits asked for, in Apptainer's (cgroup v1) units; None: not set."""

    cpu_quota: int | None = None  # microseconds per CPU_PERIOD (--cpus)
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    memory: int | None = None  # bytes
    memory_reservation: int | None = None
    memory_swap: int | None = None  # memory + swap, bytes; -1: unlimited
    oom_kill_disable: bool = False
    pids: int | None = None  # -1: unlimited
    blkio_weight: int | None = None
    blkio_weight_devices: tuple[tuple[int, int, int], ...] = ()  # (major, minor, weight)

    def controllers(self) -> list[str]:
        """The cgroup v1 controllers these limits need."""
        wanted = {
            "cpu": self.cpu_quota is not None or self.cpu_shares is not None,
            "cpuset": self.cpuset_cpus is not None or self.cpuset_mems is not None,
            "memory": any(v is not None for v in (self.memory, self.memory_reservation,
                                                    self.memory_swap)) or self.oom_kill_disable,
            "pids": self.pids is not None,
            "blkio": self.blkio_weight is not None or bool(self.blkio_weight_devices),
        }
        return [name for name, needed in wanted.items() if needed]


# --- parsing the flags (Apptainer's rules and messages) ------------------------

def parse_cpus(text: str) -> int:
    """``--cpus 1.5`` -> the CFS quota for :data:`CPU_PERIOD`."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise UsageError(f"invalid cpus value: can't convert {text} to decimal") from None
    most = os.cpu_count() or 1
    if not Decimal("0.01") <= value <= most:
        raise UsageError(f"cpus value must be in range 0.01 - {most}")
    return int(value * CPU_PERIOD)


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "p": 1 << 50, "pb": 1 << 50}


def parse_bytes(text: str, flag: str) -> int:
    """``512m``, ``1G``, ``1.5gb``, ``1048576``: binary units, as Docker's
    ``RAMInBytes`` reads them."""
    stripped = text.strip().lower()
    number = stripped.rstrip("kmgtpb")
    unit = stripped[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0:
        raise UsageError(f"invalid {flag} value: invalid size: '{text}'")
    return int(value * _UNITS[unit])


def parse_weight(text: str, flag: str) -> int:
    weight = parse_integer(text, flag)
    if not 10 <= weight <= 1000:
        raise UsageError(f"{flag} must be in range 10-1000")
    return weight


def parse_weight_device(text: str) -> tuple[int, int, int]:
    """``/dev/sda:200`` -> (major, minor, weight)."""
    import stat

    path, sep, weight = text.rpartition(":")
    if not sep:
        raise UsageError("blkio-weight-device specifications must be in "
                         "<device>:<weight> format")
    try:
        info = os.lstat(path)
    except OSError as err:
        raise UsageError(f"while examining device: {err.strerror}: {path}") from None
    if not (stat.S_ISBLK(info.st_mode) or stat.S_ISCHR(info.st_mode)):
        raise UsageError(f"while examining device: {path} is not a device")
    value = parse_integer(weight, "blkio-weight-device")
    if not 10 <= value <= 1000:
        raise UsageError("blkio-device-weight must be in range 10-1000")
    return os.major(info.st_rdev), os.minor(info.st_rdev), value


def parse_integer(text: str, flag: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UsageError(f"invalid argument \"{text}\" for \"--{flag}\" flag: "
                         "parse error") from None


# --- can this process use cgroups? ---------------------------------------------

def _unified() -> bool:
    """Is /sys/fs/cgroup the cgroup v2 hierarchy (not v1, not hybrid)?"""
    return os.path.exists(f"{_ROOT}/cgroup.controllers")


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map", encoding="ascii") as handle:
            fields = handle.read().split()
    except OSError:
        return False
    return fields[:3] != ["0", "0", "4294967295"]


def _own_cgroup_v2() -> str:
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return "/"


def _v2_base() -> str:
    """The directory the container's v2 cgroup goes in: beside the caller's
    (a v2 cgroup holding processes may not have controlled children)."""
    own = _own_cgroup_v2()
    return _ROOT + (os.path.dirname(own.rstrip("/")) if own != "/" else "")


def unusable_reason() -> str | None:
    """Why this process cannot put a container in a cgroup; None if it can.
    The wording follows Apptainer's ``cannot use cgroups - ...``."""
    if os.geteuid() == 0:
        if _in_user_namespace():
            return "rootless cgroups is not usable in fakeroot mode"
        return None
    if not _unified():
        return "system is not configured for cgroups v2 in unified mode"
    base = _v2_base()
    if os.stat(base).st_uid != os.geteuid() or not os.access(base, os.W_OK):
        return (f"the cgroup {base[len(_ROOT):] or '/'} is not delegated to this user "
                "(capsa does not ask systemd for one over D-Bus)")
    return None


# --- the container's cgroup ----------------------------------------------------

def _v1_paths(controllers: list[str]) -> dict[str, str]:
    """controller -> directory of the caller's cgroup in that hierarchy."""
    found: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                if name in controllers:
                    found[name] = f"{_ROOT}/{name}{path}".rstrip("/")
    missing = [c for c in controllers if c not in found or not os.path.isdir(found[c])]
    if missing:
        raise ContainerError(f"container creation failed: while applying cgroups config: "
                             f"no cgroup v1 hierarchy for {', '.join(missing)}")
    return found


def _directories(limits: Limits, pid: int) -> list[tuple[str, str]]:
    """(controller or "unified", directory) of the container's cgroup(s)."""
    name = f"apptainer-{pid}"
    if _unified():
        return [("unified", f"{_v2_base()}/{name}")]
    return [(c, f"{parent}/{name}") for c, parent in _v1_paths(limits.controllers()).items()]


def _write(directory: str, name: str, value: str) -> None:
    try:
        with open(f"{directory}/{name}", "w", encoding="ascii") as handle:
            handle.write(value)
    except OSError as err:
        raise ContainerError(f"container creation failed: while applying cgroups config: "
                             f"while setting cgroup limits: write {directory}/{name}: "
                             f"{err.strerror}") from err


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def _v1_settings(controller: str, limits: Limits, directory: str) -> list[tuple[str, str]]:
    parent = os.path.dirname(directory)
    if controller == "cpu":
        return [*([("cpu.shares", str(limits.cpu_shares))] if limits.cpu_shares else []),
                *([("cpu.cfs_period_us", str(CPU_PERIOD)),
                   ("cpu.cfs_quota_us", str(limits.cpu_quota))] if limits.cpu_quota else [])]
    if controller == "cpuset":  # a v1 cpuset takes no process before both are set
        return [("cpuset.cpus", limits.cpuset_cpus or _read(f"{parent}/cpuset.cpus")),
                ("cpuset.mems", limits.cpuset_mems or _read(f"{parent}/cpuset.mems"))]
    if controller == "memory":
        values = [("memory.limit_in_bytes", limits.memory),
                  ("memory.soft_limit_in_bytes", limits.memory_reservation),
                  ("memory.memsw.limit_in_bytes", limits.memory_swap)]
        settings = [(name, str(value)) for name, value in values if value is not None]
        return settings + ([("memory.oom_control", "1")] if limits.oom_kill_disable else [])
    if controller == "pids":
        return [("pids.max", "max" if limits.pids == -1 else str(limits.pids))]
    weight = "blkio.weight" if os.path.exists(f"{directory}/blkio.weight") \
        else "blkio.bfq.weight"
    return [*([(weight, str(limits.blkio_weight))] if limits.blkio_weight else []),
            *[(f"{weight}_device", f"{a}:{b} {w}") for a, b, w in limits.blkio_weight_devices]]


def _v2_settings(limits: Limits) -> list[tuple[str, str]]:
    settings: list[tuple[str, str]] = []
    if limits.cpu_shares:  # runc's conversion of v1 shares (2..262144) to a weight
        shares = min(max(limits.cpu_shares, 2), 262144)
        settings.append(("cpu.weight", str(1 + ((shares - 2) * 9999) // 262142)))
    if limits.cpu_quota:
        settings.append(("cpu.max", f"{limits.cpu_quota} {CPU_PERIOD}"))
    if limits.cpuset_cpus:
        settings.append(("cpuset.cpus", limits.cpuset_cpus))
    if limits.cpuset_mems:
        settings.append(("cpuset.mems", limits.cpuset_mems))
    if limits.memory is not None:
        settings.append(("memory.max", str(limits.memory)))
    if limits.memory_reservation is not None:
        settings.append(("memory.low", str(limits.memory_reservation)))
    if limits.memory_swap is not None:  # v1 counts memory + swap, v2 swap alone
        swap = limits.memory_swap
        settings.append(("memory.swap.max", "max" if swap == -1 else
                         str(max(swap - (limits.memory or 0), 0))))
    if limits.pids is not None:
        settings.append(("pids.max", "max" if limits.pids == -1 else str(limits.pids)))
    if limits.blkio_weight:
        settings.append(("io.weight", f"default {limits.blkio_weight}"))
    settings += [("io.weight", f"{a}:{b} {w}") for a, b, w in limits.blkio_weight_devices]
    return settings


def _v2_controllers(settings: list[tuple[str, str]]) -> list[str]:
    return sorted({name.split(".")[0] for name, _ in settings})


def _create(limits: Limits, pid: int) -> list[tuple[str, str]]:
    made = _directories(limits, pid)
    for controller, directory in made:
        if os.path.isdir(directory):
            continue
        if controller == "unified":
            settings = _v2_settings(limits)
            wanted = " ".join(f"+{c}" for c in _v2_controllers(settings))
            _write(os.path.dirname(directory), "cgroup.subtree_control", wanted)
        else:
            settings = _v1_settings(controller, limits, directory)
        try:
            os.mkdir(directory, 0o755)
        except OSError as err:
            raise ContainerError(f"container creation failed: while applying cgroups "
                                 f"config: mkdir {directory}: {err.strerror}") from err
        for name, value in settings:
            _write(directory, name, value)
    return made


def _own_cgroup_dirs(controllers: list[str]) -> list[str]:
    """The directories of the caller's cgroups (to come back to)."""
    if _unified():
        return [f"{_ROOT}{_own_cgroup_v2()}".rstrip("/")]
    return list(_v1_paths(controllers).values())


def enter(limits: Limits) -> list[str]:
    """Move this process into the container's cgroup (made on first use), so
    that a process it forks starts there; return where to :func:`leave` to."""
    made = _create(limits, os.getpid())
    home = _own_cgroup_dirs(limits.controllers())
    try:
        for _, directory in made:
            _write(directory, "cgroup.procs", "0")  # 0: the writing process itself
    except ContainerError:
        leave(home)
        raise
    return home


def leave(home: list[str]) -> None:
    """Back to the cgroups :func:`enter` returned."""
    for directory in home:
        _write(directory, "cgroup.procs", "0")


def join_cgroup_of(pid: int) -> None:
    """Move this process into the container cgroup(s) of *pid* (an
    instance's first process), as Apptainer does for a process joining an
    instance started with limits."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as err:
        raise ContainerError(f"could not read the cgroups of instance process {pid}: "
                             f"{err.strerror}") from err
    for line in lines:
        _, names, path = line.split(":", 2)
        if not os.path.basename(path).startswith("apptainer-"):
            continue
        controller = names.split(",")[0] if names else ""
        directory = f"{_ROOT}/{controller}{path}" if controller else f"{_ROOT}{path}"
        _write(directory.rstrip("/"), "cgroup.procs", "0")


def remove(limits: Limits | None) -> None:
    """Remove the container's cgroup(s) once its processes are gone."""
    if limits is None:
        return
    try:
        made = _directories(limits, os.getpid())
    except (OSError, ContainerError) as err:
        log.debug("cgroup cleanup: %s", err)
        return
    for _, directory in made:
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError as err:
            log.debug("cgroup cleanup: rmdir %s: %s", directory, err.strerror)


__all__ = ["Limits", "enter", "join_cgroup_of", "leave", "parse_bytes", "parse_cpus", "remove",
           "unusable_reason"]
