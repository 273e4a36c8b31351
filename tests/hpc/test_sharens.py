"""Ranks that share one container (``--share-ns KEY``, as Slurm and MPI
jobs get without it), on the busybox SIF: one user namespace and one image
mount for all, the first rank staying until the last has left, each rank
its own command, environment and status; and never a container another
user set up.  Root and the test user for the sharing itself; the rest as
the test user (whose rootless containers are what sharing saves)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.hpc.conftest import background, settled, squashfuse_count

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns

BARRIER = "touch /s/ready.$R; while [ ! -e /s/go ]; do sleep 0.05; done"


def _rank(capsa: Capsa, image: Path, work: Path, key: str, script: str, *flags: str,
          number: int = 0) -> subprocess.Popen[str]:
    argv = capsa.argv("exec", "--share-ns", key, "--env", f"R={number}", "-B",
                      f"{work / 's'}:/s", *flags, str(image), "sh", "-c", script)
    return background(capsa, argv, {"TMPDIR": str(work / "tmp")})


@pytest.fixture
def work(scratch: Path) -> Path:
    for name in ("s", "tmp"):
        (scratch / name).mkdir(mode=0o1777)
        (scratch / name).chmod(0o1777)
    return scratch


def _wait_for(paths: list[Path], procs: list[subprocess.Popen[str]],
              timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        failed = [p for p in procs if p.poll() is not None]
        assert not failed, [p.communicate() for p in failed]
        assert time.monotonic() < deadline, "ranks did not start"
        time.sleep(0.05)


def _finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append((proc.returncode, out, err))
    return results


def _loops_of(image: Path) -> int:
    return sum(1 for path in glob.glob("/sys/block/loop*/loop/backing_file")
               if Path(path).read_text().strip() == str(image))


def test_ranks_share_one_container(any_capsa: Capsa, images: dict[str, Path],
                                   work: Path) -> None:
    image = images["sif"]
    script = f"readlink /proc/self/ns/user > /s/ns.$R; {BARRIER}"
    procs = [_rank(any_capsa, image, work, "job-1", script, number=n) for n in range(4)]
    _wait_for([work / "s" / f"ready.{n}" for n in range(4)], procs)
    if any_capsa.user.is_root:
        assert _loops_of(image) == 1  # one kernel mount of the image, not four
    else:
        # one FUSE server, not four (none if another test closed /dev/fuse meanwhile)
        assert squashfuse_count(image) <= 1
        assert len({(work / "s" / f"ns.{n}").read_text() for n in range(4)}) == 1
    (work / "s" / "go").touch()
    assert [r[0] for r in _finish(procs)] == [0, 0, 0, 0]
    assert settled(work / "tmp", str(work)) == []


def test_first_rank_stays_until_the_last_has_left(capsa_user: Capsa, images: dict[str, Path],
                                                  work: Path) -> None:
    """Rank 0 sets the container up and its command ends at once; rank 1
    joins, then reads the image for a second more and fails with its own
    status.  Each keeps its environment and working directory."""
    s = work / "s"
    first = _rank(capsa_user, images["sif"], work, "job-2",
                  "touch /s/zero; while [ ! -e /s/one ]; do sleep 0.05; done; echo $R $PWD",
                  "--pwd", "/tmp", number=0)
    _wait_for([s / "zero"], [first])
    second = _rank(capsa_user, images["sif"], work, "job-2",
                   "touch /s/one; sleep 1; cat /bin/busybox > /dev/null && echo $R $PWD; "
                   "exit 3", "--pwd", "/etc", number=1)
    (code0, out0, err0), (code1, out1, err1) = _finish([first, second])
    assert (code0, out0) == (0, "0 /tmp\n"), err0
    assert (code1, out1) == (3, "1 /etc\n"), err1
    assert settled(work / "tmp", str(work)) == []


def test_first_rank_waits_for_the_others(capsa_user: Capsa, images: dict[str, Path],
                                         work: Path) -> None:
    """Its command done, the first rank's process stays while another uses
    the container (MPI and Slurm wait for every rank anyway)."""
    s = work / "s"
    first = _rank(capsa_user, images["sif"], work, "job-3",
                  "touch /s/zero; while [ ! -e /s/in ]; do sleep 0.05; done")
    _wait_for([s / "zero"], [first])
    second = _rank(capsa_user, images["sif"], work, "job-3", f"touch /s/in; {BARRIER}",
                   number=1)
    _wait_for([s / "ready.1"], [second])
    time.sleep(0.5)
    assert first.poll() is None, "the first rank left while another rank used its container"
    (s / "go").touch()
    assert [r[0] for r in _finish([first, second])] == [0, 0]


def test_ranks_with_pid_namespaces_share_too(capsa_user: Capsa, images: dict[str, Path],
                                            work: Path) -> None:
    """--pid: a joining rank keeps a monitor (the namespace is its child's),
    and each rank is PID 1 of its own namespace in the shared container."""
    script = f"readlink /proc/self/ns/user > /s/ns.$R; echo $$ > /s/pid.$R; {BARRIER}"
    procs = [_rank(capsa_user, images["sif"], work, "job-9", script, "--pid", number=n)
             for n in range(2)]
    _wait_for([work / "s" / f"ready.{n}" for n in range(2)], procs)
    assert len({(work / "s" / f"ns.{n}").read_text() for n in range(2)}) == 1
    (work / "s" / "go").touch()
    assert [r[0] for r in _finish(procs)] == [0, 0]
    # sh -c runs as the child of each namespace's init
    assert [(work / "s" / f"pid.{n}").read_text().strip() for n in range(2)] == ["2", "2"]
    assert settled(work / "tmp", str(work)) == []


def test_different_options_make_different_containers(capsa_user: Capsa,
                                                     images: dict[str, Path],
                                                     work: Path) -> None:
    script = f"readlink /proc/self/ns/user > /s/ns.$R; {BARRIER}"
    procs = [_rank(capsa_user, images["sif"], work, "job-4", script, number=0),
             _rank(capsa_user, images["sif"], work, "job-4", script, "--contain", number=1),
             _rank(capsa_user, images["sif"], work, "job-5", script, number=2)]
    _wait_for([work / "s" / f"ready.{n}" for n in range(3)], procs)
    assert len({(work / "s" / f"ns.{n}").read_text() for n in range(3)}) == 3
    (work / "s" / "go").touch()
    assert [r[0] for r in _finish(procs)] == [0, 0, 0]


def test_ranks_killed_with_sigkill_leave_a_key_the_next_job_can_use(
        capsa_user: Capsa, images: dict[str, Path], work: Path) -> None:
    """SIGKILL (a time limit's last word) stops a rank's monitor before it
    can clean; squashfuse dies with it, and the next ranks with that key
    set a new container up and sweep the meeting file away."""
    procs = [_rank(capsa_user, images["sif"], work, "job-6", BARRIER, number=n)
             for n in range(2)]
    _wait_for([work / "s" / f"ready.{n}" for n in range(2)], procs)
    for proc in procs:
        os.killpg(proc.pid, signal.SIGKILL)
    _finish(procs)
    meeting = work / "tmp" / f"capsa-ranks-{capsa_user.user.uid}"
    assert len(list(meeting.iterdir())) == 1
    (work / "s" / "go").touch()
    again = _rank(capsa_user, images["sif"], work, "job-6", "echo again")
    assert _finish([again])[0][:2] == (0, "again\n")
    assert not meeting.exists()
    assert squashfuse_count(images["sif"]) == 0


def test_sharens_shares_between_children_of_one_parent(capsa_user: Capsa,
                                                      images: dict[str, Path],
                                                      work: Path) -> None:
    """Apptainer's --sharens (also APPTAINER_SHARENS=1): one shell's three
    containers are one; another shell's is its own."""
    capsa = " ".join(capsa_user.argv("exec", "--sharens", "-B", f"{work / 's'}:/s",
                                      str(images["sif"]), "sh", "-c",
                                      f"'readlink /proc/self/ns/user > /s/ns.$R; {BARRIER}'"))
    shell = " ".join(f"R={n} {capsa} &" for n in range(3)) + " wait"
    parents = [background(capsa_user, ["sh", "-c", shell], {"TMPDIR": str(work / "tmp")}),
               background(capsa_user, ["sh", "-c", f"R=3 {capsa}"],
                          {"TMPDIR": str(work / "tmp")})]
    _wait_for([work / "s" / f"ready.{n}" for n in range(4)], parents)
    spaces = [(work / "s" / f"ns.{n}").read_text() for n in range(4)]
    assert len(set(spaces[:3])) == 1 and spaces[3] != spaces[0]
    (work / "s" / "go").touch()
    assert [r[0] for r in _finish(parents)] == [0, 0]


# -- another user -----------------------------------------------------------------

@pytest.mark.parametrize("plant", ["directory", "symlink"])
def test_a_meeting_directory_of_another_user_is_refused(capsa_user: Capsa, capsa_evil: Capsa,
                                                        images: dict[str, Path], work: Path,
                                                        plant: str) -> None:
    """Another user took the name of the test user's meeting directory
    (``TMPDIR`` is shared): the rank says so and runs a container of its own,
    writing nothing there."""
    evil_dir = work / "tmp" / "evil"
    capsa_evil("exec", str(images["sif"]), "mkdir", "-m", "777", str(evil_dir),
               check=True, cwd=work)
    name = work / "tmp" / f"capsa-ranks-{capsa_user.user.uid}"
    if plant == "directory":
        capsa_evil("exec", str(images["sif"]), "mkdir", "-m", "777", str(name),
                   check=True, cwd=work)
    else:
        capsa_evil("exec", str(images["sif"]), "ln", "-s", str(evil_dir), str(name),
                   check=True, cwd=work)
    rank = _rank(capsa_user, images["sif"], work, "job-7", "echo mine")
    code, out, err = _finish([rank])[0]
    assert (code, out) == (0, "mine\n"), err
    assert "not sharing the container between ranks" in err
    assert "is not a private directory" in err
    assert list(evil_dir.iterdir()) == []


def test_a_rank_never_joins_a_process_of_another_user(capsa_user: Capsa, capsa_evil: Capsa,
                                                      images: dict[str, Path],
                                                      work: Path) -> None:
    """The meeting file is made to name another user's container monitor
    (as a recycled PID would, or a root-owned tool gone wrong): the next rank
    refuses it and sets a container of its own up."""
    s = work / "s"
    evil = background(capsa_evil, capsa_evil.argv(
        "exec", "-B", f"{s}:/s", str(images["sif"]), "sh", "-c",
        "readlink /proc/self/ns/user > /s/ns.evil; touch /s/evil; sleep 60"),
        {"TMPDIR": str(work / "tmp")})
    first = _rank(capsa_user, images["sif"], work, "job-8", BARRIER, number=0)
    _wait_for([s / "evil", s / "ready.0"], [evil, first])
    meeting_dir = work / "tmp" / f"capsa-ranks-{capsa_user.user.uid}"
    meeting = next(meeting_dir.iterdir())
    _, _, root, text = meeting.read_text().split("\n", 3)
    start = Path(f"/proc/{evil.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    meeting.write_text(f"{evil.pid}\n{start}\n{root}\n{text}")
    second = _rank(capsa_user, images["sif"], work, "job-8",
                   f"readlink /proc/self/ns/user > /s/ns.$R; {BARRIER}", number=1)
    _wait_for([s / "ready.1"], [second])
    assert (s / "ns.1").read_text() != (s / "ns.evil").read_text()
    (s / "go").touch()
    os.killpg(evil.pid, signal.SIGTERM)
    results = _finish([first, second])
    assert [r[0] for r in results] == [0, 0], results
    _finish([evil])
