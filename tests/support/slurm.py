"""A one-node Slurm cluster for the tests, started and stopped by the suite.

Debian's ``slurm-wlm`` and ``munge``, run as root from a temporary
directory: a munge key and ``munged`` on a socket of their own, and a
minimal ``slurm.conf`` (``proctrack/linuxproc``, ``task/none``, no cgroups,
no accounting, ``MpiDefault=pmix``) with its state, spool, logs and ports
all private, so that nothing of the host's own Slurm (if any) is touched.
Clients find it through ``SLURM_CONF`` (:meth:`SlurmCluster.env`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support.env import SCRATCH, is_root
from support.registry import free_port

PROGRAMS = ("munged", "slurmctld", "slurmd", "srun", "sbatch", "salloc", "scancel", "squeue")
NODE = "capsanode"
_PMIX_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so")


@dataclass
class SlurmCluster:
    """The running cluster: its directory, config and daemons."""

    base: Path
    conf: Path
    daemons: list[subprocess.Popen[bytes]]

    def env(self) -> dict[str, str]:
        """What a client (srun, sbatch...) needs to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A Slurm command as root (squeue, scancel, scontrol)."""
        return subprocess.run(list(argv), env={**os.environ, **self.env()}, text=True,
                              capture_output=True, timeout=timeout)

    def jobs(self) -> list[str]:
        """The ids of jobs not finished yet."""
        out = self.run("squeue", "-h", "-o", "%i").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def wait_gone(self, job_id: str, timeout: float = 60) -> None:
        """Until the job *job_id* has ended and its processes are reaped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if job_id not in self.jobs():
                return
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} still there: {self.jobs()}\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.base / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel what still runs, let its step daemons finish, stop the
        daemons and remove the directory."""
        if self.daemons and self.daemons[-1].poll() is None:
            self.run("scancel", "--partition=debug")
            deadline = time.monotonic() + 15
            while self._step_daemons() and time.monotonic() < deadline:
                time.sleep(0.2)
        for proc in reversed(self.daemons):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.daemons):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._stop_step_daemons()
        shutil.rmtree(self.base, ignore_errors=True)

    def _step_daemons(self) -> list[int]:
        """The slurmstepd processes of this cluster's jobs (by SLURM_CONF)."""
        wanted = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().startswith("slurmstepd") and \
                        wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def _stop_step_daemons(self) -> None:
        """Those that outlived slurmd, trying to report to it."""
        for pid in self._step_daemons():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue


def unavailable() -> str | None:
    """Why the cluster cannot start here, or None."""
    if not is_root():
        return "starting slurmd and slurmctld needs root"
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return f"Slurm or munge is not installed (no {', '.join(missing)}; Debian: slurm-wlm munge)"
    if not _PMIX_PLUGIN.exists():
        return f"Slurm's PMIx plugin is missing ({_PMIX_PLUGIN})"
    return None


def slurm_cluster() -> Iterator[SlurmCluster]:
    """The fixture's body: start, yield, stop."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    base = Path(tempfile.mkdtemp(prefix="slurm-", dir=SCRATCH))
    os.chmod(base, 0o755)
    cluster = SlurmCluster(base, base / "slurm.conf", [])
    try:
        cluster.daemons.append(_start_munge(base))
        cluster.conf.write_text(_slurm_conf(base))
        cluster.conf.chmod(0o644)
        # The PMIx plugin's per-step directories, else /tmp/spmix_appdir_*.
        (base / "mpi.conf").write_text(f"PMIxCliTmpDirBase={base / 'pmix'}\n")
        (base / "pmix").mkdir(mode=0o1777)
        (base / "pmix").chmod(0o1777)
        env = {**os.environ, **cluster.env()}
        cluster.daemons.append(subprocess.Popen(
            ["slurmctld", "-D", "-i", "-f", str(cluster.conf)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cluster.daemons.append(subprocess.Popen(
            ["slurmd", "-D", "-N", NODE, "-f", str(cluster.conf)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_ready(cluster)
        yield cluster
    finally:
        cluster.stop()


def _start_munge(base: Path) -> subprocess.Popen[bytes]:
    munge = base / "munge"
    munge.mkdir(mode=0o755)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket_path = munge / "munge.socket"
    proc = subprocess.Popen(
        ["munged", "-F", "--force", f"--socket={socket_path}", f"--key-file={key}",
         f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
         f"--seed-file={munge / 'munged.seed'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if socket_path.exists():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    log = (munge / "munged.log").read_text(errors="replace") if (munge / "munged.log").exists() \
        else ""
    proc.kill()
    raise RuntimeError(f"munged did not start: {log[-2000:]}")


def _slurm_conf(base: Path) -> str:
    host = socket.gethostname()
    cpus = os.cpu_count() or 1
    for sub in ("state", "spool"):
        (base / sub).mkdir(mode=0o755)
    return f"""\
ClusterName=capsatests
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={base / "munge" / "munge.socket"}
CredType=cred/munge
StateSaveLocation={base / "state"}
SlurmdSpoolDir={base / "spool"}
SlurmctldPidFile={base / "slurmctld.pid"}
SlurmdPidFile={base / "slurmd.pid"}
SlurmctldLogFile={base / "slurmctld.log"}
SlurmdLogFile={base / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=pmix
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=3
MinJobAge=2
FirstJobId={1000 + int.from_bytes(os.urandom(3), "big")}
InactiveLimit=0
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE OverSubscribe=FORCE:4 State=UP
"""


def _wait_ready(cluster: SlurmCluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in cluster.daemons:
            if proc.poll() is not None:
                raise RuntimeError(f"a Slurm daemon exited ({proc.args})\n{cluster.logs()}")
        state = cluster.run("sinfo", "-h", "-N", "-o", "%t").stdout.strip()
        if state.startswith("idle"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"the Slurm node did not become idle\n{cluster.logs()}")
