"""Fixtures for the HPC tests: a parallel job's ranks under Slurm and MPI.

Built or started once per session, shared by every test here:

- ``mpi_image``: the hybrid model's image, built by capsa from a definition
  file (Open MPI and the programs of :mod:`support.mpi` compiled in
  ``%post``) as the unprivileged user, the way HPC images are built;
- ``host_mpi``: the bind model's host Open MPI prefix;
- ``slurm``: a one-node Slurm cluster (:mod:`support.slurm`);
- ``evil_user``: a second unprivileged user who attacks the test user's ranks.

Every test passes its own ``TMPDIR`` (where capsa keeps its session
directories and the ranks' meeting directory), so what it leaves behind is
what it sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from support import mounting, mpi
from support.cli import Capsa, Result
from support.debian import DebianBase, debian_base
from support.env import SCRATCH, is_root
from support.images import build_all
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)
from support.slurm import SlurmCluster, slurm_cluster, unavailable
from support.users import User, ensure_hostile_user, ensure_test_user

# Root's mpirun refuses to start without these.
MPIRUN_AS_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def _work_dir(prefix: str) -> Path:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))
    os.chmod(path, 0o1777)
    return path


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, Path]]:
    base = _work_dir("hpc-images-")
    os.chmod(base, 0o755)
    yield build_all(base / "img")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def hpc_debian(plain_registry: Registry) -> Iterator[DebianBase]:  # noqa: F811
    yield from debian_base(plain_registry)


@pytest.fixture(scope="session")
def mpi_image(hpc_debian: DebianBase, source_copy: Path) -> Iterator[Path]:
    """The hybrid image (``CAPSA_TEST_MPI_IMAGE`` names one built already,
    to skip the two-minute build while working on these tests)."""
    prebuilt = os.environ.get("CAPSA_TEST_MPI_IMAGE")
    if prebuilt:
        yield Path(prebuilt)
        return
    if not is_root():
        pytest.skip("building the MPI image as the test user needs root")
    work = _work_dir("hpc-mpi-")
    try:
        builder = Capsa(ensure_test_user(), source_copy)
        yield mpi.build_hybrid_image(builder, hpc_debian.host, hpc_debian.sources_line(), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def host_mpi() -> Iterator[mpi.HostMpi]:
    if shutil.which("mpicc") is None or shutil.which("mpirun") is None:
        pytest.skip("the host has no Open MPI (Debian: openmpi-bin libopenmpi-dev)")
    work = _work_dir("hpc-hostmpi-")
    os.chmod(work, 0o755)
    try:
        yield mpi.host_mpi_prefix(work / "prefix", mpi.write_sources(work / "src"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    yield from slurm_cluster()


@pytest.fixture(scope="session")
def evil_user() -> User:
    if not is_root():
        pytest.skip("creating the hostile user needs root")
    return ensure_hostile_user()


@pytest.fixture
def capsa_evil(source_copy: Path, evil_user: User) -> Capsa:
    return Capsa(evil_user, source_copy)


# root where it cannot make mount namespaces: skipped (as in the runtime tests)
_skip_root_without_mounts = mounting._skip_root_without_mounts


# -- running ranks ----------------------------------------------------------------

def rank_env(capsa: Capsa, tmpdir: Path, extra: Mapping[str, str] | None = None
             ) -> dict[str, str]:
    """The environment of a launcher (mpirun, srun) and so of its ranks."""
    env = {"TMPDIR": str(tmpdir), **(extra or {})}
    if capsa.user.is_root:
        env.update(MPIRUN_AS_ROOT)
    return env


def launched(capsa: Capsa, launcher: Sequence[str], *args: str,
             env: Mapping[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 300) -> Result:
    """``LAUNCHER... capsa ARGS`` as *capsa*'s user: mpirun, srun, sbatch..."""
    argv = [*launcher, *capsa.argv(*args)] if args else list(launcher)
    full = capsa.full_env(env)
    wrapped = capsa.user.wrap(argv)
    if wrapped[0] == "setpriv":
        at = wrapped.index("--reset-env") + 1
        wrapped = [*wrapped[:at], "env", *(f"{k}={v}" for k, v in full.items()),
                   *wrapped[at:]]
    proc = subprocess.run(wrapped, env=None if wrapped[0] == "setpriv" else full,
                          cwd=str(cwd or capsa.user.home), capture_output=True, text=True,
                          timeout=timeout)
    return Result(argv, proc.returncode, proc.stdout, proc.stderr)


def background(capsa: Capsa, argv: Sequence[str], env: Mapping[str, str],
               cwd: Path | None = None) -> subprocess.Popen[str]:
    """*argv* (a launcher and capsa's argv, or capsa's alone) started as
    *capsa*'s user, in its own session (to be signalled as a whole)."""
    full = capsa.full_env(env)
    wrapped = capsa.user.wrap(list(argv))
    prefix = ["env", "-i", *(f"{k}={v}" for k, v in full.items())]
    if wrapped[0] == "setpriv":
        at = wrapped.index("--reset-env") + 1
        wrapped = [*wrapped[:at], *prefix, *wrapped[at:]]
    else:
        wrapped = [*prefix, *wrapped]
    return subprocess.Popen(wrapped, cwd=str(cwd or capsa.user.home), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


# -- what is left behind ----------------------------------------------------------

def squashfuse_count(image: Path) -> int:
    """FUSE servers of *image* (other engineers' tests run theirs meanwhile)."""
    return sum(1 for line in processes_mentioning(str(image))
               if os.path.basename(line.split(": ", 1)[1].split(" ", 1)[0]) == "squashfuse_ll")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain *text* (a test's path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def leftovers(tmpdir: Path, marker: str) -> list[str]:
    """What a finished job left: processes naming *marker*, and anything in
    its TMPDIR (session directories, extracted images, meeting files)."""
    found = processes_mentioning(marker)
    found += [str(p) for p in tmpdir.iterdir()] if tmpdir.exists() else []
    return found


def settled(tmpdir: Path, marker: str, timeout: float = 20) -> list[str]:
    """:func:`leftovers`, once exiting processes have had time to go."""
    deadline = time.monotonic() + timeout
    found = leftovers(tmpdir, marker)
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = leftovers(tmpdir, marker)
    return found


# -- Slurm jobs ---------------------------------------------------------------------

def in_slurm(capsa: Capsa, slurm: SlurmCluster, job: Path, launcher: list[str], *args: str,
             timeout: float = 300) -> Result:
    """A Slurm command (srun, sbatch, salloc) as *capsa*'s user; a variable
    no launcher sets is in its environment too, to see --cleanenv drop it."""
    env = rank_env(capsa, job / "tmp", {**slurm.env(), "NOT_A_LAUNCHER_VARIABLE": "1"})
    return launched(capsa, launcher, *args, env=env, cwd=job, timeout=timeout)


def job_script(job: Path, body: str) -> Path:
    script = job / "job.sh"
    script.write_text(f"#!/bin/sh\nexport TMPDIR={job / 'tmp'}\n{body}\n")
    script.chmod(0o755)
    return script


def started_job(capsa: Capsa, slurm: SlurmCluster, job: Path, image: Path,
                *sbatch_flags: str) -> str:
    """Submit two ranks that sleep; their job id once both run."""
    capsa_argv = " ".join(capsa.argv("exec", "-B", f"{job / 's'}:/s", str(image), "sh", "-c",
                                      "'touch /s/started.$SLURM_PROCID; exec sleep 300'"))
    script = job_script(job, f"srun -n 2 {capsa_argv}")
    result = in_slurm(capsa, slurm, job, ["sbatch", "--parsable", "-n", "2", *sbatch_flags,
                                          "-o", str(job / "out"), str(script)])
    assert result.returncode == 0, f"{result}\n{slurm.logs()}"
    job_id = result.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 60
    while not all((job / "s" / f"started.{n}").exists() for n in range(2)):
        assert time.monotonic() < deadline, f"the job did not start\n{slurm.logs()}"
        time.sleep(0.1)
    assert leftovers(job / "tmp", str(job)) != []  # running: there is something to stop
    return job_id


@pytest.fixture(scope="session")
def time_limited(slurm: SlurmCluster, images: dict[str, Path],
                 source_copy: Path) -> Iterator[tuple[str, Path]]:
    """A job of the test user with a one-minute limit (Slurm counts in
    minutes, and acts on its periodic pass): submitted before the first test
    here, so that it runs out while the others run (and the MPI image builds)."""
    if not is_root():
        pytest.skip("running as the test user needs root")
    job = Path(tempfile.mkdtemp(prefix="t-limit-", dir=SCRATCH))
    job.chmod(0o1777)
    for name in ("tmp", "s"):
        (job / name).mkdir(mode=0o1777)
        (job / name).chmod(0o1777)
    image = job / "image.sif"  # its own: other tests count the FUSE servers of theirs
    shutil.copy(images["sif"], image)
    capsa = Capsa(ensure_test_user(), source_copy)
    job_id = started_job(capsa, slurm, job, image, "--time=1")
    try:
        yield job_id, job
    finally:
        slurm.run("scancel", job_id)
        slurm.wait_gone(job_id)
        shutil.rmtree(job, ignore_errors=True)


@pytest.fixture(autouse=True)
def _time_limited_first(request: pytest.FixtureRequest) -> None:
    """The first test here starts the time-limited job (where Slurm runs);
    if that fails, only test_time_limit_leaves_nothing says so."""
    if unavailable() is None:
        try:
            request.getfixturevalue("time_limited")
        except (Exception, pytest.skip.Exception):
            return
