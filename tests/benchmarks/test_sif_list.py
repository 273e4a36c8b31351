"""The sif_list benchmark script runs (its figures are not asserted)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from capsa.sif import DataType, NewObject, create
from support.env import REPO


def test_benchmark_runs_on_a_fresh_image(tmp_path: Path) -> None:
    image = tmp_path / "a.sif"
    create(image, [NewObject(DataType.GENERIC, data=b"x")])
    done = subprocess.run([str(REPO / "benchmarks" / "sif_list" / "run"), str(image), "2"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "capsa sif list" in done.stdout and "median" in done.stdout


def test_benchmark_fails_without_its_peer(tmp_path: Path) -> None:
    """No siftool: a FAILED line and exit 1, not capsa's figures alone."""
    image = tmp_path / "a.sif"
    create(image, [NewObject(DataType.GENERIC, data=b"x")])
    done = subprocess.run(["/usr/bin/python3", str(REPO / "benchmarks" / "sif_list" / "run"),
                           str(image), "2"], env={"PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done
    assert done.stdout == ("FAILED: not installed: siftool (the peer this benchmark compares "
                           "with: apt-get install siftool)\n"), done
