"""Build a small image from a local registry with one RUN/%post step,
rootless, with capsa and side by side with podman:

- capsa-cold:  ``capsa build --disable-cache out.sif app.def`` (fetch, unpack,
               nested %post, squashfs, SIF);
- capsa-warm:  the same with the SIF cache already holding the base image;
- podman:      ``podman build`` of the equivalent Dockerfile into its store.

The image is the test suite's busybox OCI image (support.ocibuild), so the
figures are dominated by fixed costs (start-up, the nested container, the
packing), not by I/O.  Prints medians of ``--runs`` runs and the ratio to
capsa-cold.  Run as root (it starts a registry and runs every tool as the
unprivileged test user).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from support import ocibuild  # noqa: E402
from support.registry import Registry, start_registry  # noqa: E402
from support.users import User, ensure_test_user  # noqa: E402

VENV = Path(os.environ.get("CAPSA_VENV", "/opt/capsa/venv"))
IMAGE = "bench/busybox:latest"
POST = "echo built > /built-marker"


def timed(user: User, argv: list[str], env: dict[str, str], cwd: Path) -> float:
    full = {**user.base_env(), **env}
    cmd = user.wrap(["env", *(f"{k}={v}" for k, v in full.items()), *argv])
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-600:]}")
    return elapsed


def _capsa(user: User, registry: Registry, d: Path, cache: Path, *, cold: bool) -> float:
    definition = d / "app.def"
    definition.write_text(f"Bootstrap: docker\nFrom: {registry.host}/{IMAGE}\n\n"
                          f"%post\n    {POST}\n")
    env = {"APPTAINER_CACHEDIR": str(cache), "PYTHONPATH": str(REPO / "src"),
           "PYTHONDONTWRITEBYTECODE": "1", "APPTAINER_TMPDIR": str(d)}
    flags = ["--disable-cache"] if cold else []
    return timed(user, [str(VENV / "bin/python"), "-m", "capsa", "-q", "build", "--no-https",
                        *flags, str(d / "out.sif"), str(definition)], env, d)


def _podman(user: User, registry: Registry, d: Path) -> float:
    (d / "Dockerfile").write_text(f"FROM {registry.host}/{IMAGE}\nRUN {POST}\n")
    run = Path(tempfile.mkdtemp(prefix="pr", dir="/tmp"))  # podman wants a short run root
    user.own(run)
    env = {"XDG_RUNTIME_DIR": str(run), "TMPDIR": str(d)}
    base = ["podman", "--root", str(d / "storage"), "--runroot", str(run / "p"),
            "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
            "--runtime", "runc"]
    try:
        return timed(user, [*base, "build", "--quiet", "--network=host", "--tls-verify=false",
                            "-t", "bench", str(d)], env, d)
    finally:  # the store holds files of sub-uids: remove it from inside
        full = {**user.base_env(), **env}
        subprocess.run(user.wrap(["env", *(f"{k}={v}" for k, v in full.items()),
                                  *base, "unshare", "rm", "-rf", str(d / "storage")]),
                       capture_output=True)
        shutil.rmtree(run, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", default="capsa-cold,capsa-warm,podman")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/build/run must run as root (it measures as an unprivileged user)")
        return 2
    user = ensure_test_user()
    work = Path(tempfile.mkdtemp(prefix="capsa-bench-build-", dir="/var/tmp"))
    os.chmod(work, 0o1777)
    registry = start_registry()
    try:
        layout = ocibuild.busybox_layout(work / "layout", "latest")
        registry.push_oci_layout(layout, IMAGE)
        cache = work / "cache"
        cache.mkdir()
        user.own(cache)
        runners: dict[str, Callable[[Path], float]] = {
            "capsa-cold": lambda d: _capsa(user, registry, d, cache, cold=True),
            "capsa-warm": lambda d: _capsa(user, registry, d, cache, cold=False),
            "podman": lambda d: _podman(user, registry, d),
        }
        medians: dict[str, float] = {}
        for tool in args.tools.split(","):
            samples = []
            try:
                for index in range(args.runs + 1):  # the first run warms up
                    d = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=work))
                    user.own(d)
                    seconds = runners[tool](d)
                    if index:
                        samples.append(seconds)
            except RuntimeError as err:
                print(f"{tool:12} skipped: {err}")
                continue
            medians[tool] = statistics.median(samples)
        base = medians.get("capsa-cold")
        print(f"\nbuild with one %post/RUN step, busybox base, rootless, {args.runs} runs")
        for tool, median in medians.items():
            ratio = f"  x{median / base:.2f} of capsa-cold" if base else ""
            print(f"  {tool:12} median {median:6.2f} s{ratio}")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
