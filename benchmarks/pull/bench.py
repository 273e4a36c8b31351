"""Pull a multi-layer image of 500+ MB from a local registry, cold cache,
rootless, with capsa and side by side with the peers:

- capsa:       ``capsa pull`` (one verified SIF, zstd squashfs), gzip inflated
               by ISA-L (the ``isal`` package);
- capsa-zlib:  the same with ``isal`` hidden, so zlib inflates (the fallback);
- apptainer:   the pipeline Apptainer runs inside ``pull``: ``skopeo copy`` to
               an OCI layout, ``umoci unpack --rootless``, ``mksquashfs -comp gzip``;
- charliecloud: ``ch-image pull`` then ``ch-convert -o squash`` (HTTPS registry);
- podman:      ``podman pull`` into its layer store (no single file).

Prints, per tool, the median wall time and peak memory (``/usr/bin/time -v``)
of ``--runs`` runs and the ratio to capsa; then the machine's floor, the
slowest of the three stages a pull cannot avoid, each timed alone in the same
run: download (``skopeo copy`` of the blobs to a directory), inflate (every
layer through ISA-L, one after the other, as capsa does; zlib for reference)
and compress (``tar2sqfs`` zstd level 3 on the merged tree, as capsa packs),
and capsa's ratio to it (goal: 1.3 or less).  Run as root (it installs the
peers from ``benchmarks/pull/apt-packages.txt``, builds the image with
debootstrap, starts registries, and runs every tool as the unprivileged test
user).  A tool that cannot run here is a FAILED line and a non-zero exit
before anything is measured, never a skipped row (``benchmarks/peers.py``).
Usage: ``benchmarks/pull/run [--runs N] [--tools capsa,podman]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from benchmarks.peers import fail, install  # noqa: E402

from support import ocibuild  # noqa: E402
from support.registry import Registry, start_registry  # noqa: E402
from support.users import User, ensure_test_user  # noqa: E402

VENV = Path(os.environ.get("CAPSA_VENV", "/opt/capsa/venv"))
IMAGE = "bench/debian:latest"
PACKAGES = ("python3", "gcc", "perl")
LAYOUT = ocibuild.CACHE / "bench-layout-v3"
TOOLS = ("capsa", "capsa-zlib", "apptainer", "charliecloud", "podman")


@dataclass
class Sample:
    wall: float
    rss_kib: int


@dataclass
class Setup:
    user: User
    plain: Registry
    tls: Registry | None
    work: Path


def build_layout() -> Path:
    if (LAYOUT / "index.json").exists():
        return LAYOUT
    print("building the benchmark image (debootstrap, once per machine)...", flush=True)
    tar = ocibuild.debian_rootfs_tar(PACKAGES)
    layers = [ocibuild.layer(raw, "gzip6") for raw in ocibuild.split_tar(tar, 4)]
    img = ocibuild.image(layers, config={"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["bash"]})
    tmp = LAYOUT.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ocibuild.write_layout(tmp, "latest", [img])
    os.rename(tmp, LAYOUT)
    return LAYOUT


def _raw_size(tar_path: Path) -> int:
    """Bytes of file content in the image (apt's .debs left out, as in the layers)."""
    import tarfile

    with tarfile.open(tar_path) as tar:
        return sum(m.size for m in tar if not ocibuild.is_apt_archive(m.name))


def timed(user: User, argv: list[str], env: dict[str, str], cwd: Path) -> Sample:
    """Run *argv* as *user* under ``/usr/bin/time -v``."""
    full = {**user.base_env(), **env}
    cmd = user.wrap(["env", *(f"{k}={v}" for k, v in full.items()),
                     "/usr/bin/time", "-v", *argv])
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        own = proc.stderr.split("\tCommand being timed:")[0].strip().splitlines()
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{' | '.join(own[-3:])}")
    return Sample(_elapsed(proc.stderr), _rss(proc.stderr))


def _elapsed(text: str) -> float:
    match = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if match is None:
        raise RuntimeError(f"no time in output:\n{text[-2000:]}")
    seconds = 0.0
    for part in match.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _rss(text: str) -> int:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(match.group(1)) if match else 0


def fresh_dir(setup: Setup, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=setup.work))
    setup.user.own(path)
    return path


def run_capsa(setup: Setup, d: Path, *, without_isal: bool = False) -> Sample:
    ref = f"docker://{setup.plain.host}/{IMAGE}"
    path = [str(REPO / "src")]
    if without_isal:  # a package named isal whose import fails: capsa falls back to zlib
        hidden = d / "no-isal"
        (hidden / "isal").mkdir(parents=True)
        (hidden / "isal" / "__init__.py").write_text("raise ImportError('hidden')\n")
        path.insert(0, str(hidden))
    env = {"APPTAINER_CACHEDIR": str(d / "cache"), "PYTHONPATH": ":".join(path),
           "PYTHONDONTWRITEBYTECODE": "1", "APPTAINER_TMPDIR": str(d)}
    return timed(setup.user, [str(VENV / "bin" / "python"), "-m", "capsa", "pull",
                              "--no-https", str(d / "out.sif"), ref], env, d)


def run_capsa_zlib(setup: Setup, d: Path) -> Sample:
    return run_capsa(setup, d, without_isal=True)


def run_apptainer(setup: Setup, d: Path) -> Sample:
    script = (
        f"skopeo --insecure-policy copy --quiet --src-tls-verify=false "
        f"docker://{setup.plain.host}/{IMAGE} oci:{d}/oci:latest && "
        f"umoci unpack --rootless --image {d}/oci:latest {d}/bundle >/dev/null && "
        f"mksquashfs {d}/bundle/rootfs {d}/out.sqfs -noappend -comp gzip -quiet")
    return timed(setup.user, ["sh", "-c", script], {"TMPDIR": str(d)}, d)


def run_charliecloud(setup: Setup, d: Path) -> Sample:
    assert setup.tls is not None
    env = {"CH_IMAGE_STORAGE": str(d / "ch"), "CH_IMAGE_CACHE": "disabled",
           "REQUESTS_CA_BUNDLE": str(setup.tls.ca_file), "TMPDIR": str(d)}
    ref = f"{setup.tls.host}/{IMAGE}"
    script = (f"ch-image pull {ref} >/dev/null && "
              f"ch-convert -i ch-image -o squash {ref} {d}/out.sqfs >/dev/null")
    return timed(setup.user, ["sh", "-c", script], env, d)


def run_podman(setup: Setup, d: Path) -> Sample:
    # podman refuses a run root longer than 50 characters.
    run = Path(tempfile.mkdtemp(prefix="pr", dir="/tmp"))
    setup.user.own(run)
    env = {"XDG_RUNTIME_DIR": str(run), "TMPDIR": str(d)}
    base = ["podman", "--root", str(d / "storage"), "--runroot", str(run / "p"),
            "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"]
    try:
        return timed(setup.user, [*base, "pull", "--quiet", "--tls-verify=false",
                                  f"{setup.plain.host}/{IMAGE}"], env, d)
    finally:  # the store holds files of sub-uids: remove it from inside
        full = {**setup.user.base_env(), **env}
        subprocess.run(setup.user.wrap(["env", *(f"{k}={v}" for k, v in full.items()),
                                        *base, "unshare", "rm", "-rf", str(d / "storage")]),
                       capture_output=True)
        shutil.rmtree(run, ignore_errors=True)


RUNNERS: dict[str, Callable[[Setup, Path], Sample]] = {
    "capsa": run_capsa, "capsa-zlib": run_capsa_zlib, "apptainer": run_apptainer,
    "charliecloud": run_charliecloud, "podman": run_podman,
}


def probe(setup: Setup, tool: str) -> str | None:
    """Why *tool* cannot be measured here, or None."""
    needs = {"capsa": ["tar2sqfs"], "capsa-zlib": ["tar2sqfs"],
             "apptainer": ["skopeo", "umoci", "mksquashfs"],
             "charliecloud": ["ch-image", "ch-convert"], "podman": ["podman"]}[tool]
    missing = [p for p in needs if shutil.which(p) is None]
    if missing:
        return f"not installed: {', '.join(missing)}"
    if tool == "charliecloud" and setup.tls is None:
        return "no HTTPS registry"
    try:
        RUNNERS[tool](setup, fresh_dir(setup, f"probe-{tool}"))
    except (RuntimeError, OSError) as err:
        return f"does not work here: {str(err)[-400:]}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--no-probe", action="store_true",
                        help="skip the warm-up run that checks each tool works")
    parser.add_argument("--compressors", action="store_true",
                        help="instead: time tar2sqfs on the image's rootfs per compressor")
    args = parser.parse_args()
    if args.compressors:
        return compressors(args.runs)
    if os.geteuid() != 0:
        print("benchmarks/pull/run must run as root (it measures as an unprivileged user)")
        return 2
    install(Path(__file__).with_name("apt-packages.txt"))
    layout = build_layout()
    user = ensure_test_user()
    work = Path(tempfile.mkdtemp(prefix="capsa-bench-", dir="/var/tmp"))
    os.chmod(work, 0o1777)
    plain = start_registry()
    tls = None
    try:
        plain.push_oci_layout(layout, IMAGE)
        try:
            tls = start_registry(tls=True)
            tls.push_oci_layout(layout, IMAGE)
        except Exception as err:  # charliecloud's probe then fails with the reason
            print(f"no HTTPS registry: {err}")
        setup = Setup(user, plain, tls, work)
        return measure(setup, [t for t in args.tools.split(",") if t], args.runs,
                       not args.no_probe, layout)
    finally:
        for registry in (plain, tls):
            if registry is not None:
                registry.stop()
                shutil.rmtree(registry.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def measure(setup: Setup, tools: list[str], runs: int, warm_up: bool, layout: Path) -> int:
    size = sum(f.stat().st_size for f in (layout / "blobs").rglob("*") if f.is_file())
    raw = _raw_size(ocibuild.debian_rootfs_tar(PACKAGES))
    print(f"image: {raw / 1e6:.0f} MB uncompressed, {size / 1e6:.0f} MB gzip, 4 layers; "
          f"{runs} run(s) each, cold cache, as {setup.user.name}; {os.cpu_count()} CPUs")
    unknown = [tool for tool in tools if tool not in RUNNERS]
    if unknown:
        fail(f"unknown tools: {', '.join(unknown)} (known: {', '.join(TOOLS)})")
    broken = {tool: reason for tool in tools
              if (reason := probe(setup, tool) if warm_up else None)}
    for tool, reason in broken.items():
        print(f"  {tool:<13} FAILED: {reason}")
    if broken:
        fail(f"{', '.join(broken)} cannot run here: nothing to compare (see above)")
    samples: dict[str, list[Sample]] = {t: [] for t in tools}
    for _ in range(runs):
        for tool in tools:  # interleaved, so load changes hit every tool alike
            try:
                samples[tool].append(RUNNERS[tool](setup, fresh_dir(setup, tool)))
            except RuntimeError as err:
                fail(f"{tool}: {err}")
    report(samples)
    if "capsa" in samples:
        floor(setup, layout, runs, statistics.median(s.wall for s in samples["capsa"]))
    return 0


def floor(setup: Setup, layout: Path, runs: int, capsa_wall: float) -> None:
    """The slowest unavoidable stage of a pull, each stage timed alone."""
    stages: dict[str, list[float]] = {"download": [], "inflate (ISA-L)": [],
                                      "inflate (zlib)": [], "compress": []}
    blobs = _layer_blobs(layout)
    rootfs = setup.work / "rootfs.tar"
    rootfs.write_bytes(ocibuild.split_tar(ocibuild.debian_rootfs_tar(PACKAGES), 1)[0])
    for _ in range(runs):
        d = fresh_dir(setup, "floor")
        stages["download"].append(timed(setup.user, [
            "skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{setup.plain.host}/{IMAGE}", f"dir:{d}/blobs"], {"TMPDIR": str(d)},
            d).wall)
        stages["inflate (ISA-L)"].append(_inflate(blobs, "isal"))
        stages["inflate (zlib)"].append(_inflate(blobs, "zlib"))
        out = d / "fs.sqfs"
        with rootfs.open("rb") as src:
            start = time.monotonic()
            subprocess.run(["tar2sqfs", "-q", "-f", "-c", "zstd", "-X", "level=3", "-j",
                            str(os.cpu_count() or 1), str(out)], stdin=src, check=True)
            stages["compress"].append(time.monotonic() - start)
        shutil.rmtree(d, ignore_errors=True)
    rootfs.unlink()
    medians = {name: statistics.median(walls) for name, walls in stages.items()}
    print(f"\n  floor: each stage alone, median of {runs}")
    for name, wall in medians.items():
        print(f"  {name:<16} {wall:>6.2f} s")
    limit = max(medians["download"], medians["inflate (ISA-L)"], medians["compress"])
    ratio = capsa_wall / limit
    print(f"  floor (slowest of download, ISA-L inflate, compress): {limit:.2f} s; "
          f"capsa/floor = {ratio:.2f} (goal <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'})")


def _layer_blobs(layout: Path) -> list[Path]:
    """The layout's gzip layer blobs (the manifest and config are JSON)."""
    return [blob for blob in sorted((layout / "blobs" / "sha256").iterdir())
            if _head(blob) == b"\x1f\x8b"]


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(2)


def _inflate(blobs: list[Path], how: str) -> float:
    """Seconds to inflate every blob, one after the other, on one core."""
    import gzip

    from isal import igzip

    opener = igzip.open if how == "isal" else gzip.open
    start = time.monotonic()
    for blob in blobs:
        with opener(blob, "rb") as stream:
            while stream.read(1 << 20):
                pass
    return time.monotonic() - start


COMPRESSORS = (("zstd", "1"), ("zstd", "3"), ("zstd", "9"), ("gzip", "1"), ("gzip", "9"),
               ("lz4", ""))


def compressors(runs: int) -> int:
    """How long tar2sqfs takes on the rootfs tar, and how big the result is."""
    source = ocibuild.debian_rootfs_tar(PACKAGES)
    print(f"tar2sqfs on {_raw_size(source) / 1e6:.0f} MB of rootfs, "
          f"{os.cpu_count()} CPUs, median of {runs}")
    print(f"  {'compressor':<12} {'wall s':>7} {'MB':>7}")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        out = Path(tmp) / "fs.sqfs"
        tar = Path(tmp) / "rootfs.tar"
        tar.write_bytes(ocibuild.split_tar(source, 1)[0])
        for name, level in COMPRESSORS:
            extra = ["-X", f"level={level}"] if level else []
            argv = ["tar2sqfs", "-q", "-f", "-c", name, *extra, "-j", str(os.cpu_count()),
                    str(out)]
            walls = []
            for _ in range(runs):
                with tar.open("rb") as src:
                    start = time.monotonic()
                    subprocess.run(argv, stdin=src, check=True)
                    walls.append(time.monotonic() - start)
            label = f"{name} {level}".strip()
            print(f"  {label:<12} {statistics.median(walls):>7.2f} "
                  f"{out.stat().st_size / 1e6:>7.0f}")
    return 0


def report(samples: dict[str, list[Sample]]) -> None:
    medians = {t: (statistics.median(s.wall for s in v),
                   statistics.median(s.rss_kib for s in v)) for t, v in samples.items() if v}
    base = medians.get("capsa")
    print(f"\n  {'tool':<13} {'wall s':>8} {'peak MiB':>9} {'wall/capsa':>11}   runs (s)")
    for tool, (wall, rss) in medians.items():
        ratio = f"{wall / base[0]:.2f}" if base else "-"
        runs = " ".join(f"{s.wall:.1f}" for s in samples[tool])
        print(f"  {tool:<13} {wall:>8.2f} {rss / 1024:>9.0f} {ratio:>11}   {runs}")
    if base and "podman" in medians:
        verdict = "met" if base[0] <= medians["podman"][0] else "NOT met"
        print(f"\n  goal (capsa no slower than podman pull): {verdict}, "
              f"capsa/podman = {base[0] / medians['podman'][0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
