"""Build the tutorial's definition file (Debian, ``apt-get install git wget``
from the mirror this machine's apt names) side by side:

- capsa-root:     ``capsa build out.sif tut.def`` as root;
- capsa-fakeroot: ``capsa build --fakeroot out.sif tut.def`` as an
                  unprivileged user with a subuid range;
- buildah:        rootless ``buildah bud`` (overlay, runc) of the equivalent
                  Containerfile, then Apptainer's conversion: ``skopeo copy``
                  to an OCI layout, ``umoci unpack --rootless``,
                  ``mksquashfs -comp gzip``;
- charliecloud:   rootless ``ch-image build --force`` (HTTPS registry), then
                  ``ch-convert -o squash``.

Every run starts cold (empty caches and stores) on a private tmpfs, so that
the peak scratch disk is measured exactly (sampled every 50 ms) and the
tools share nothing.  Runs are interleaved; medians are printed with the
ratio to the fastest peer.  A tool that cannot run is a FAILED row and a
non-zero exit, never a silent skip.  Run as root: ``benchmarks/build/run``
(it installs the peers from ``benchmarks/build/apt-packages.txt``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]

from support import ocibuild  # noqa: E402
from support.registry import Registry, start_registry  # noqa: E402
from support.users import User, current_user, ensure_test_user  # noqa: E402

VENV = Path(os.environ.get("CAPSA_VENV", "/opt/capsa/venv"))
IMAGE = "bench/debian:bookworm"
LAYOUT = ocibuild.CACHE / "bench-build-layout-v1"
TOOLS = ("capsa-root", "capsa-fakeroot", "buildah", "charliecloud")
PEERS = ("buildah", "charliecloud")
SCRATCH_SIZE = "16g"

DEFINITION = """\
Bootstrap: docker
From: {base}

%post
    echo "deb {mirror} bookworm main" > /etc/apt/sources.list
    apt-get update && apt-get install -y git wget

%environment
    export LOG_DIR=/var/logs/tensorflow

%runscript
    exec git --version

%help
    This container includes git and wget.
"""

CONTAINERFILE = """\
FROM {base}
RUN echo "deb {mirror} bookworm main" > /etc/apt/sources.list && \\
    apt-get update && apt-get install -y git wget
ENV LOG_DIR=/var/logs/tensorflow
CMD ["git", "--version"]
"""


class Failed(Exception):
    """A tool failed: the row says why."""


@dataclass
class Setup:
    user: User
    plain: Registry
    tls: Registry
    mirror: str


@dataclass
class Sample:
    wall: float
    peak_bytes: int
    phases: dict[str, float] = field(default_factory=dict)


class Scratch:
    """A private tmpfs for one run, and the most of it ever in use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _used(self) -> int:
        info = os.statvfs(self.path)
        return (info.f_blocks - info.f_bfree) * info.f_frsize

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            self._stop.wait(0.05)

    def __enter__(self) -> Scratch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used())


@contextmanager
def scratch_for(owner: User) -> Iterator[Scratch]:
    path = Path(tempfile.mkdtemp(prefix="capsa-bench-build-", dir="/var/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SCRATCH_SIZE},mode=0755", "bench",
                    str(path)], check=True)
    try:
        os.chown(path, owner.uid, owner.gid)
        with Scratch(path) as scratch:
            yield scratch
    finally:
        subprocess.run(["umount", str(path)], check=False)
        os.rmdir(path)


def run_as(user: User, argv: list[str], env: dict[str, str], cwd: Path, what: str) -> float:
    """Run *argv* as *user*; its wall time, or :class:`Failed` with its last words."""
    full = {**user.base_env(), **env}
    cmd = user.wrap(["env", *(f"{k}={v}" for k, v in full.items()), *argv])
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-4:]
        raise Failed(f"{what} exited {proc.returncode}: {' | '.join(last)}")
    return elapsed


def check_squashfs(path: Path, offset: int = 0) -> None:
    """The result holds git and wget (the build really did its work)."""
    argv = ["unsquashfs", "-l", *(["-o", str(offset)] if offset else []), str(path)]
    listing = subprocess.run(argv, capture_output=True, text=True).stdout
    for program in ("usr/bin/git", "usr/bin/wget"):
        if f"squashfs-root/{program}\n" not in listing:
            raise Failed(f"{path.name} has no /{program}")


# ---------------------------------------------------------------- the tools


def run_capsa(setup: Setup, d: Path, *, fakeroot: bool) -> dict[str, float]:
    user = setup.user if fakeroot else current_user()
    definition = d / "tut.def"
    definition.write_text(DEFINITION.format(base=f"{setup.plain.host}/{IMAGE}",
                                            mirror=setup.mirror))
    env = {"APPTAINER_CACHEDIR": str(d / "cache"), "APPTAINER_TMPDIR": str(d),
           "HOME": str(d), "PYTHONPATH": str(REPO / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    flags = ["--fakeroot"] if fakeroot else []
    wall = run_as(user, [str(VENV / "bin/python"), "-m", "capsa", "build", "--no-https",
                         *flags, str(d / "out.sif"), str(definition)], env, d, "capsa build")
    check_squashfs(d / "out.sif", ocibuild.partition_offset(d / "out.sif"))
    return {"build": wall}


def run_buildah(setup: Setup, d: Path) -> dict[str, float]:
    (d / "run").mkdir(mode=0o700)
    (d / "Containerfile").write_text(CONTAINERFILE.format(base=f"{setup.plain.host}/{IMAGE}",
                                                          mirror=setup.mirror))
    run = setup.user.own(d / "run")  # buildah insists on its own runtime directory
    env = {"HOME": str(d), "XDG_RUNTIME_DIR": str(run), "TMPDIR": str(d)}
    storage = ["--root", str(d / "storage"), "--runroot", str(run / "s"),
               "--storage-driver", "overlay"]
    phases = {"bud": run_as(setup.user, [
        "buildah", *storage, "bud", "--runtime", "runc", "--network", "host",
        "--tls-verify=false", "--quiet", "-t", "tut", str(d)], env, d, "buildah bud")}
    source = f"containers-storage:[overlay@{d / 'storage'}+{run / 's'}]localhost/tut:latest"
    phases["skopeo copy"] = run_as(setup.user, [
        "buildah", *storage, "unshare", "skopeo", "--insecure-policy", "copy", "--quiet",
        source, f"oci:{d / 'oci'}:latest"], env, d, "skopeo copy")
    phases["umoci unpack"] = run_as(setup.user, [
        "umoci", "unpack", "--rootless", "--image", f"{d / 'oci'}:latest", str(d / "bundle")],
        env, d, "umoci unpack")
    phases["mksquashfs"] = run_as(setup.user, [
        "mksquashfs", str(d / "bundle/rootfs"), str(d / "out.sqfs"), "-noappend",
        "-comp", "gzip", "-quiet", "-no-progress"], env, d, "mksquashfs")
    check_squashfs(d / "out.sqfs")
    return phases


def run_charliecloud(setup: Setup, d: Path) -> dict[str, float]:
    assert setup.tls.ca_file is not None
    (d / "Dockerfile").write_text(CONTAINERFILE.format(base=f"{setup.tls.host}/{IMAGE}",
                                                       mirror=setup.mirror))
    shutil.copy(setup.tls.ca_file, d / "ca.pem")
    os.chmod(d / "ca.pem", 0o644)
    env = {"HOME": str(d), "TMPDIR": str(d), "CH_IMAGE_STORAGE": str(d / "ch"),
           "CH_IMAGE_CACHE": "disabled", "REQUESTS_CA_BUNDLE": str(d / "ca.pem")}
    phases = {"ch-image build": run_as(setup.user, [
        "ch-image", "build", "--force", "-t", "tut", "-f", str(d / "Dockerfile"), str(d)],
        env, d, "ch-image build")}
    phases["ch-convert"] = run_as(setup.user, [
        "ch-convert", "-i", "ch-image", "-o", "squash", "tut", str(d / "out.sqfs")],
        env, d, "ch-convert")
    check_squashfs(d / "out.sqfs")
    return phases


RUNNERS: dict[str, Callable[[Setup, Path], dict[str, float]]] = {
    "capsa-root": lambda s, d: run_capsa(s, d, fakeroot=False),
    "capsa-fakeroot": lambda s, d: run_capsa(s, d, fakeroot=True),
    "buildah": run_buildah,
    "charliecloud": run_charliecloud,
}


def measure_once(setup: Setup, tool: str) -> Sample:
    owner = current_user() if tool == "capsa-root" else setup.user
    with scratch_for(owner) as scratch:
        start = time.perf_counter()
        phases = RUNNERS[tool](setup, scratch.path)
        wall = time.perf_counter() - start
    return Sample(wall, scratch.peak, phases)


# ---------------------------------------------------------------- setting up


def base_layout() -> Path:
    """The tutorial's base: a debootstrapped bookworm (minbase), one layer."""
    if (LAYOUT / "index.json").exists():
        return LAYOUT
    print("building the base image (debootstrap, once per machine)...", flush=True)
    tmp = LAYOUT.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ocibuild.debian_layout(tmp, "bookworm")
    os.rename(tmp, LAYOUT)
    return LAYOUT


def check_peers_installed(tools: list[str]) -> list[str]:
    needs = {"capsa-root": ["tar2sqfs", "unsquashfs"],
             "capsa-fakeroot": ["tar2sqfs", "unsquashfs", "newuidmap"],
             "buildah": ["buildah", "runc", "skopeo", "umoci", "mksquashfs"],
             "charliecloud": ["ch-image", "ch-convert", "mksquashfs"]}
    problems = []
    for tool in tools:
        missing = [p for p in needs[tool] if shutil.which(p) is None]
        if missing:
            problems.append(f"{tool}: not installed: {', '.join(missing)} "
                            "(benchmarks/build/run installs benchmarks/build/apt-packages.txt)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/build/run must run as root (it also measures as an unprivileged user)")
        return 2
    tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        print(f"unknown tools: {', '.join(unknown)} (known: {', '.join(TOOLS)})")
        return 2
    problems = check_peers_installed(tools)
    if problems:
        print("FAILED before starting:\n  " + "\n  ".join(problems))
        return 1
    user = ensure_test_user()
    layout = base_layout()
    plain = start_registry()
    tls = start_registry(tls=True)
    try:
        for registry in (plain, tls):
            registry.push_oci_layout(layout, IMAGE)
        setup = Setup(user, plain, tls, ocibuild.apt_mirror())
        return measure(setup, tools, args.runs, layout)
    finally:
        for registry in (plain, tls):
            registry.stop()
            shutil.rmtree(registry.root, ignore_errors=True)


def measure(setup: Setup, tools: list[str], runs: int, layout: Path) -> int:
    size = sum(f.stat().st_size for f in (layout / "blobs").rglob("*") if f.is_file())
    print(f"tutorial definition: git and wget from {setup.mirror}; base: debootstrap minbase "
          f"bookworm ({size / 1e6:.0f} MB gzip, one layer); {runs} run(s) each, interleaved, "
          f"cold; rootless rows as {setup.user.name}; {os.cpu_count()} CPUs; scratch on a "
          "private tmpfs per run", flush=True)
    samples: dict[str, list[Sample]] = {t: [] for t in tools}
    failures: dict[str, str] = {}
    for index in range(runs):
        for tool in tools:
            if tool in failures:
                continue
            try:
                sample = measure_once(setup, tool)
            except Failed as err:
                failures[tool] = str(err)
                print(f"  run {index + 1} {tool:<15} FAILED: {err}", flush=True)
                continue
            samples[tool].append(sample)
            steps = ", ".join(f"{k} {v:.1f}" for k, v in sample.phases.items())
            print(f"  run {index + 1} {tool:<15} {sample.wall:7.1f} s  "
                  f"{sample.peak_bytes / 2**20:7.0f} MiB  ({steps})", flush=True)
    report(samples, failures)
    return 1 if failures else 0


def report(samples: dict[str, list[Sample]], failures: dict[str, str]) -> None:
    medians = {t: (statistics.median(s.wall for s in v),
                   statistics.median(s.peak_bytes for s in v)) for t, v in samples.items() if v}
    peers = [medians[p] for p in PEERS if p in medians]
    fastest = min((w for w, _ in peers), default=None)
    smallest = min((d for _, d in peers), default=None)
    print(f"\n  {'tool':<15} {'wall s':>8} {'peak MiB':>9} {'wall/fastest peer':>18} "
          f"{'disk/smallest peer':>19}   runs (s)")
    for tool, values in samples.items():
        if tool in failures and not values:
            print(f"  {tool:<15} FAILED: {failures[tool]}")
            continue
        wall, disk = medians[tool]
        wall_ratio = f"{wall / fastest:.2f}" if fastest else "-"
        disk_ratio = f"{disk / smallest:.2f}" if smallest else "-"
        runs = " ".join(f"{s.wall:.1f}" for s in values)
        print(f"  {tool:<15} {wall:>8.1f} {disk / 2**20:>9.0f} {wall_ratio:>18} "
              f"{disk_ratio:>19}   {runs}")
    for tool in ("capsa-root", "capsa-fakeroot"):
        if tool in medians and fastest:
            verdict = "met" if medians[tool][0] <= fastest else "NOT met"
            print(f"  goal ({tool} at or below the fastest peer): {verdict}")
    if failures:
        print(f"\nFAILED: {', '.join(failures)} (see above)")


if __name__ == "__main__":
    sys.exit(main())
