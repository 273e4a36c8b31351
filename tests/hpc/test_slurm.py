"""capsa under Slurm: ``srun``, ``srun --mpi=pmix``, an ``sbatch`` script,
a ``salloc`` allocation, ``scancel`` and a time limit, on the suite's
one-node cluster.  ``srun`` and ``scancel`` as root and as the test user;
``sbatch``, ``salloc`` and the time limit (the same launch path again, and
the slowest: its job, started before the first test of this directory,
runs out while the others run) as the test user only."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.hpc.conftest import in_slurm, job_script, settled, started_job

from support.cli import Capsa
from support.mpi import CMA_WARNING
from support.slurm import SlurmCluster

pytestmark = [pytest.mark.needs_userns, pytest.mark.slow]


@pytest.fixture
def job(scratch: Path) -> Path:
    """A job's directory: its TMPDIR and what its ranks write (``/s``)."""
    for name in ("tmp", "s"):
        (scratch / name).mkdir(mode=0o1777)
        (scratch / name).chmod(0o1777)
    return scratch


def test_srun_ranks_get_slurms_environment(any_capsa: Capsa, slurm: SlurmCluster,
                                           images: dict[str, Path], job: Path) -> None:
    """Also with --cleanenv: a rank needs its launcher's variables."""
    script = ('echo "$SLURM_PROCID $SLURM_JOB_ID.$SLURM_STEP_ID $PMIX_NAMESPACE '
              '${NOT_A_LAUNCHER_VARIABLE:-clean}"')
    result = in_slurm(any_capsa, slurm, job, ["srun", "-n", "2"], "exec", "--cleanenv",
                      str(images["sif"]), "sh", "-c", script)
    assert result.returncode == 0, f"{result}\n{slurm.logs()}"
    lines = sorted(result.stdout.splitlines())
    assert [line.split()[0] for line in lines] == ["0", "1"], str(result)
    step = lines[0].split()[1]
    assert all(line.split()[1:] == [step, f"slurm.pmix.{step}", "clean"] for line in lines)
    assert settled(job / "tmp", str(job)) == []


def test_srun_pmix_allreduce(any_capsa: Capsa, slurm: SlurmCluster, mpi_image: Path,
                             job: Path) -> None:
    result = in_slurm(any_capsa, slurm, job, ["srun", "--mpi=pmix", "-n", "2"], "exec",
                      str(mpi_image), "/opt/allreduce")
    assert result.returncode == 0, f"{result}\n{slurm.logs()}"
    assert "size=2 sum=3 userns=1" in result.stdout
    assert CMA_WARNING not in result.stdout + result.stderr
    assert settled(job / "tmp", str(job)) == []


def test_sbatch_job(capsa_user: Capsa, slurm: SlurmCluster, mpi_image: Path,
                    job: Path) -> None:
    capsa = " ".join(capsa_user.argv("exec", str(mpi_image), "/opt/allreduce"))
    script = job_script(job, f"srun -n 2 {capsa}")
    result = in_slurm(capsa_user, slurm, job, ["sbatch", "--wait", "-n", "2", "-o",
                                               str(job / "out"), str(script)])
    assert result.returncode == 0, f"{result}\n{slurm.logs()}"
    output = (job / "out").read_text()
    assert "size=2 sum=3 userns=1" in output, output
    assert CMA_WARNING not in output
    assert settled(job / "tmp", str(job)) == []


def test_salloc_allocation(capsa_user: Capsa, slurm: SlurmCluster, mpi_image: Path,
                           job: Path) -> None:
    capsa = " ".join(capsa_user.argv("exec", str(mpi_image), "/opt/allreduce"))
    result = in_slurm(capsa_user, slurm, job, ["salloc", "-n", "2", "sh", "-c",
                                               f"srun {capsa}"])
    assert result.returncode == 0, f"{result}\n{slurm.logs()}"
    assert "size=2 sum=3 userns=1" in result.stdout, str(result)
    assert settled(job / "tmp", str(job)) == []


def test_scancel_leaves_nothing(any_capsa: Capsa, slurm: SlurmCluster,
                                images: dict[str, Path], job: Path) -> None:
    job_id = started_job(any_capsa, slurm, job, images["sif"])
    assert slurm.run("scancel", job_id).returncode == 0
    slurm.wait_gone(job_id)
    assert settled(job / "tmp", str(job)) == []


def test_time_limit_leaves_nothing(slurm: SlurmCluster,
                                   time_limited: tuple[str, Path]) -> None:
    job_id, job = time_limited
    slurm.wait_gone(job_id, timeout=150)
    assert "TIME LIMIT" in (job / "out").read_text()
    assert settled(job / "tmp", str(job)) == []
