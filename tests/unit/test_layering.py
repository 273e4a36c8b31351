"""The one-way import graph: each stage imports only earlier stages.

reference -> registry -> layers (rootfs) -> squashfs -> SIF -> runtime, with
the CLI on top.  Imports inside functions count too: a lazy import is still
a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support.env import SRC

BASE = {"capsa", "capsa.errors", "capsa.record", "capsa.report", "capsa.site", "capsa.jsondoc",
        "capsa.tempdirs", "capsa.userdirs", "capsa.children", "capsa.programs"}
# top-level unit -> the capsa units it may import (besides itself and BASE)
ALLOWED: dict[str, set[str]] = {
    "capsa": set(),
    "capsa.__main__": {"capsa.cli"},
    "capsa.errors": set(),
    "capsa.record": set(),
    "capsa.report": set(),
    "capsa.site": set(),
    "capsa.jsondoc": set(),
    "capsa.tempdirs": set(),
    "capsa.userdirs": {"capsa.scratch"},
    "capsa.children": {"capsa.linux"},
    "capsa.programs": set(),
    "capsa.proc": set(),
    "capsa.linux": set(),
    "capsa.userns": {"capsa.linux"},
    "capsa.scratch": {"capsa.linux"},
    "capsa.digest": set(),
    "capsa.reference": set(),
    "capsa.registry": {"capsa.digest", "capsa.reference", "capsa.proc"},
    "capsa.content": {"capsa.digest", "capsa.proc"},
    "capsa.rootfs": {"capsa.digest", "capsa.proc"},
    "capsa.squashfs": {"capsa.proc", "capsa.digest", "capsa.scratch"},
    "capsa.sif": {"capsa.digest"},
    "capsa.integrity": {"capsa.sif", "capsa.digest", "capsa.proc"},
    "capsa.oci": {
        "capsa.digest", "capsa.reference", "capsa.registry", "capsa.content",
        "capsa.rootfs", "capsa.squashfs", "capsa.sif", "capsa.proc",
    },
    "capsa.pulling": {
        "capsa.digest", "capsa.reference", "capsa.registry", "capsa.content",
        "capsa.rootfs", "capsa.squashfs", "capsa.sif", "capsa.proc", "capsa.oci", "capsa.scratch",
    },
    "capsa.legacyimage": set(),
    "capsa.runtime": {"capsa.proc", "capsa.linux", "capsa.userns", "capsa.sif", "capsa.squashfs",
                      "capsa.digest", "capsa.legacyimage", "capsa.scratch"},
    "capsa.deffile": set(),
    "capsa.builder": {
        "capsa.deffile", "capsa.digest", "capsa.reference", "capsa.registry", "capsa.content",
        "capsa.rootfs", "capsa.squashfs", "capsa.sif", "capsa.proc", "capsa.oci", "capsa.pulling",
        "capsa.linux", "capsa.userns", "capsa.integrity", "capsa.legacyimage", "capsa.scratch",
        "capsa.runtime",  # %post and %test run as containers: after the runtime, never before
    },
    "capsa.cli": {"*"},
    "capsa.api": {"*"},  # the library's front door, over every stage
}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name == "capsa" or name.startswith("capsa.")}


SOURCES = sorted((SRC / "capsa").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_data_flow(path: Path) -> None:
    unit = unit_of(module_name(path))
    assert unit in ALLOWED, f"{unit} is a new unit: add it to ALLOWED with its place in the flow"
    allowed = ALLOWED[unit]
    if "*" in allowed:
        return
    for imported in imported_modules(path):
        target = unit_of(imported)
        assert target in BASE | allowed | {unit}, f"{module_name(path)} imports {imported}"


# Test folders that are not a package: suites across packages, by feature.
SUITES = {
    "unit": "capsa's top-level modules (capsa.jsondoc, capsa.linux...) and the suite's rules",
    "support": "fixtures and helpers, no tests of capsa",
    "benchmarks": "the benchmarks/ scripts",
    "clients": "Snakemake, spython, cwltool... driving capsa",
    "trust": "attacks on capsa across packages",
    "gpu": "--nv/--rocm/--nvccli end to end (capsa.runtime.gpu and its CLI)",
    "instance": "instances end to end (capsa.runtime.instance and its CLI)",
    "hpc": "parallel jobs end to end: Slurm, Open MPI, ranks sharing a container (sharens)",
}


def test_tests_mirror_the_packages() -> None:
    """tests/<name> is capsa.<name>'s, or one of the suites above."""
    tests = Path(__file__).resolve().parents[1]
    packages = {path.name for path in (SRC / "capsa").iterdir()
                if (path / "__init__.py").is_file()} | {"pulling", "api"}  # modules
    folders = {path.name for path in tests.iterdir()
               if path.is_dir() and not path.name.startswith((".", "__"))}
    assert folders - packages - SUITES.keys() == set()
