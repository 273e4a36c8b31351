"""The figures the attack tests count, for the issue's closing note.

Each test adds (tries, failures) under a figure's name; the totals are
printed at the end of the pytest run and, when ``CAPSA_TRUST_FIGURES``
names a file, kept there (``benchmarks/trust/run`` prints them from one run).
A failure is an attack that worked: the goal is 0 of each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from support.env import SCRATCH

LABELS = {
    "race": ("race tries", "unsigned executions"),
    "policy": ("policy overrides tried", "accepted"),
    "poisoning": ("poisoning attempts", "successes"),
    "interrupted": ("interrupted pulls and builds", "scratch left"),
    "fuzz": ("fuzz cases", "non-FATAL outcomes"),
}


def figures_path() -> Path:
    named = os.environ.get("CAPSA_TRUST_FIGURES")
    return Path(named) if named else SCRATCH / f"trust-figures-{os.getpid()}.jsonl"


def add(figure: str, tries: int, failures: int) -> None:
    """Count *tries* attacks of kind *figure*, *failures* of which worked."""
    assert figure in LABELS, figure
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps({"figure": figure, "tries": tries, "failures": failures}) + "\n")


def totals(path: Path) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        row = json.loads(line)
        tries, failures = found.get(row["figure"], (0, 0))
        found[row["figure"]] = (tries + row["tries"], failures + row["failures"])
    return found


def report_lines(path: Path) -> list[str]:
    counted = totals(path)
    lines = []
    for figure, (tries_label, failures_label) in LABELS.items():
        if figure in counted:
            tries, failures = counted[figure]
            lines.append(f"{tries_label}: {tries}, {failures_label}: {failures} (goal 0)")
    return lines
