"""The peers a benchmark measures capsa against.

A benchmark exists to compare: when a peer cannot run (not installed, or
failing here), it says so in a ``FAILED:`` line and exits non-zero; it never
prints the peer's row as skipped and reports capsa alone.  The Debian
packages of a benchmark's peers are listed in
``benchmarks/<name>/apt-packages.txt`` and installed (as root) before it
starts: :func:`install` in Python, ``python -m benchmarks.peers install
FILE`` from a shell script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn


def fail(message: str) -> NoReturn:
    """The benchmark cannot compare: say why, exit 1."""
    print(f"FAILED: {message}", flush=True)
    raise SystemExit(1)


def install(packages_file: Path) -> None:
    """The Debian packages *packages_file* names (one a line, ``#``
    comments), installed when missing; :func:`fail` when they cannot be."""
    wanted = [line.strip() for line in packages_file.read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    missing = [name for name in wanted if not _installed(name)]
    if not missing:
        return
    names = " ".join(missing)
    if os.geteuid() != 0:
        fail(f"the peers are not installed ({names}): run as root, or apt-get install them")
    print(f"installing the peers: {names}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if _quiet(argv, env) != 0:
        _quiet(["apt-get", "update", "-q"], env)
        if _quiet(argv, env) != 0:
            fail(f"could not install the peers: {names}")


def require(programs: Iterable[str], why: str = "") -> None:
    """Every program of *programs* is on PATH; :func:`fail` otherwise."""
    missing = [name for name in programs if shutil.which(name) is None]
    if missing:
        fail(f"not installed: {', '.join(missing)}" + (f" ({why})" if why else ""))


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True)
    return done.returncode == 0 and "install ok installed" in done.stdout


def _quiet(argv: list[str], env: dict[str, str]) -> int:
    return subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "install":
        print("usage: python -m benchmarks.peers install APT-PACKAGES-FILE", file=sys.stderr)
        return 2
    install(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
