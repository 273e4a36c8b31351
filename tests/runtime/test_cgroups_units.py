"""Resource limit values: Apptainer's parsing, and runc's v1 -> v2 conversion."""

from __future__ import annotations

import pytest

from capsa.errors import UsageError
from capsa.runtime import cgroups
from capsa.runtime.cgroups import Limits


@pytest.mark.parametrize(("text", "size"), [
    ("1024", 1024), ("512m", 512 << 20), ("1G", 1 << 30), ("1.5gb", 3 << 29), ("64K", 65536),
])
def test_sizes_as_docker_reads_them(text: str, size: int) -> None:
    assert cgroups.parse_bytes(text, "memory") == size


@pytest.mark.parametrize("text", ["12X", "", "-1g", "g"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError, match="invalid memory value"):
        cgroups.parse_bytes(text, "memory")


def test_cpus_to_quota() -> None:
    assert cgroups.parse_cpus("0.5") == 50_000
    assert cgroups.parse_cpus("1") == 100_000
    with pytest.raises(UsageError, match=r"range 0\.01"):
        cgroups.parse_cpus("0.001")


def test_v2_settings_convert_v1_numbers() -> None:
    limits = Limits(cpu_quota=150_000, cpu_shares=1024, memory=1 << 30,
                    memory_swap=(1 << 30) + (1 << 20), pids=-1, blkio_weight=500)
    assert dict(cgroups._v2_settings(limits)) == {
        "cpu.weight": "39", "cpu.max": "150000 100000", "memory.max": str(1 << 30),
        "memory.swap.max": str(1 << 20), "pids.max": "max", "io.weight": "default 500",
    }
    assert cgroups._v2_controllers(cgroups._v2_settings(limits)) == ["cpu", "io", "memory",
                                                                    "pids"]


def test_controllers_needed() -> None:
    assert Limits(memory=1).controllers() == ["memory"]
    assert Limits(cpu_quota=1, pids=3).controllers() == ["cpu", "pids"]
    assert Limits(oom_kill_disable=True).controllers() == ["memory"]
