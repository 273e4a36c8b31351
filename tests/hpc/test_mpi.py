"""Open MPI's ``mpirun`` on the host starting ``capsa exec`` ranks, in both
of Apptainer's models: hybrid (Open MPI in the image, built by capsa) and
bind (the host's Open MPI bound into an image without it).  Two ranks as
root and as the test user; eight oversubscribed ranks, and the contrast of
separate containers, as the test user only (the rootless case is the one
that needs sharing: root's ranks are all in the host's user namespace).

Every run checks the allreduce, that all ranks were in one user namespace,
that Open MPI did not fall back from CMA single-copy, and that nothing is
left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.hpc.conftest import launched, rank_env, settled

from support.cli import Capsa, Result
from support.debian import DebianBase
from support.mpi import CMA_WARNING, HostMpi

pytestmark = [pytest.mark.needs_userns, pytest.mark.slow]


# Only to prove single-copy works (a run without them must not need them):
# shared memory alone, CMA or abort.
FORCE_CMA = {"OMPI_MCA_btl_vader_single_copy_mechanism": "cma", "OMPI_MCA_btl": "vader,self"}


def _mpirun(capsa: Capsa, scratch: Path, ranks: int, *args: str,
            mca: dict[str, str] | None = None, check: bool = True) -> Result:
    launcher = ["mpirun", "--oversubscribe", "-np", str(ranks)]
    result = launched(capsa, launcher, "exec", *args,
                      env=rank_env(capsa, scratch / "tmp", mca), cwd=scratch, timeout=600)
    if check:
        assert result.returncode == 0, str(result)
    assert settled(scratch / "tmp", str(scratch)) == []
    return result


@pytest.fixture
def tmp_scratch(scratch: Path) -> Path:
    (scratch / "tmp").mkdir(mode=0o1777)
    (scratch / "tmp").chmod(0o1777)
    return scratch


def _shared(result: Result, ranks: int) -> None:
    assert f"size={ranks} sum={ranks * (ranks + 1) // 2} userns=1" in result.stdout, str(result)
    assert CMA_WARNING not in result.stdout + result.stderr


def test_hybrid_two_ranks(any_capsa: Capsa, mpi_image: Path, tmp_scratch: Path) -> None:
    args = (str(mpi_image), "/opt/allreduce")
    _shared(_mpirun(any_capsa, tmp_scratch, 2, *args), 2)
    _shared(_mpirun(any_capsa, tmp_scratch, 2, *args, mca=FORCE_CMA), 2)


def test_hybrid_eight_ranks_oversubscribed(capsa_user: Capsa, mpi_image: Path,
                                           tmp_scratch: Path) -> None:
    _shared(_mpirun(capsa_user, tmp_scratch, 8, str(mpi_image), "/opt/allreduce"), 8)


def test_hybrid_ping_pong_checks_every_byte(capsa_user: Capsa, mpi_image: Path,
                                            tmp_scratch: Path) -> None:
    result = _mpirun(capsa_user, tmp_scratch, 2, str(mpi_image), "/opt/pingpong", "200")
    assert "bad_bytes=0" in result.stdout, str(result)
    assert CMA_WARNING not in result.stdout + result.stderr


def test_separate_containers_lose_single_copy(capsa_user: Capsa, mpi_image: Path,
                                             tmp_scratch: Path) -> None:
    """What sharing fixes: with a container per rank, each rank is its own
    user namespace, and Open MPI cannot use CMA between them (it warns, if
    its message reaches mpirun, and copies twice; asked for CMA, it aborts)."""
    args = ("--no-share-ns", str(mpi_image), "/opt/allreduce")
    result = _mpirun(capsa_user, tmp_scratch, 2, *args)
    assert "size=2 sum=3 userns=2" in result.stdout, str(result)
    forced = _mpirun(capsa_user, tmp_scratch, 2, *args, mca=FORCE_CMA, check=False)
    assert "size=2" not in forced.stdout, str(forced)
    assert "vader BTL is aborting" in forced.stdout + forced.stderr, str(forced)


def test_bind_two_ranks(any_capsa: Capsa, hpc_debian: DebianBase, host_mpi: HostMpi,
                        tmp_scratch: Path) -> None:
    args = (*host_mpi.flags(), str(hpc_debian.sif), host_mpi.program("allreduce"))
    _shared(_mpirun(any_capsa, tmp_scratch, 2, *args), 2)
    _shared(_mpirun(any_capsa, tmp_scratch, 2, *args, mca=FORCE_CMA), 2)


def test_bind_eight_ranks_oversubscribed(capsa_user: Capsa, hpc_debian: DebianBase,
                                         host_mpi: HostMpi, tmp_scratch: Path) -> None:
    result = _mpirun(capsa_user, tmp_scratch, 8, *host_mpi.flags(), str(hpc_debian.sif),
                     host_mpi.program("allreduce"))
    _shared(result, 8)
