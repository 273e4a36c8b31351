"""One container per job step per node: the ranks of a parallel job share it.

``srun capsa exec app.sif ./solver`` and ``mpirun -np 64 capsa exec ...``
start one capsa per rank.  Ranks that carry the same job key (see
:func:`job_key`) and ask for the same container (image, binds, options) on
one node share one user namespace, one mount namespace and one mount of the
image, instead of a namespace and a FUSE server each:

- the **first** rank to arrive sets the container up exactly as a lone
  ``capsa exec`` does (:func:`capsa.runtime.launcher.launch`) and publishes
  where it is;
- the **others** join its namespaces with ``setns`` (as ``exec
  instance://`` joins an instance) and become their command in the same
  tree (no process of capsa stays for them), or fork it under a monitor of
  their own when they ask for a PID namespace or resource limits;
- every rank keeps its own environment, working directory, PID namespace
  choice and exit status; the first one stays until the last one has left,
  then tears the container down (its squashfuse, its mounts).

No daemon: the container belongs to the ranks' own processes.  The meeting
point is one small file per key in a directory only the user can write
(``$TMPDIR/capsa-ranks-UID``, mode 0700), and two ``fcntl`` record locks on
it do the bookkeeping, which the kernel releases when a process dies, even
by SIGKILL:

- byte 0, the **door**: held exclusively while a rank reads the file and
  joins, while the first rank sets the container up, and while the last
  one tears it down;
- byte 1, **presence**: held shared by every rank for its whole run; the
  first rank waits for it exclusively before tearing down.

A rank joins only a process of its own user, checked by uid and start time
(against a recycled PID), whose user namespace this user created; anything
else (a directory or file another user controls, a key that does not
match) makes the rank run a container of its own.
"""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import time
import zlib
from collections.abc import Mapping
from typing import NamedTuple, NoReturn

from capsa import children, linux, report
from capsa.errors import ContainerError
from capsa.runtime.launcher import _exec, _run, enter_tree, launch
from capsa.runtime.spec import ContainerSpec
from capsa.runtime.tree import NoTestScript, Plan, Tree

log = report.getLogger("capsa.runtime.sharens")

# Environment variables that name a job step, in the order they are trusted.
JOB_VARIABLES = ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_STEP_ID")
_DOOR = 0
_PRESENCE = 1
_RETRY_PAUSE = 0.01
_MAX_ATTEMPTS = 6000  # about a minute of another rank tearing down or setting up
_MAX_MEETING = 1 << 16
# Joined in this order: the user namespace first, for the rights to join the others.
_NAMESPACES = (linux.CLONE_NEWUSER, linux.CLONE_NEWIPC, linux.CLONE_NEWUTS,
               linux.CLONE_NEWNET, linux.CLONE_NEWNS)


def job_key(environ: Mapping[str, str], explicit: str | None = None) -> str | None:
    """The key of the ranks one container serves: *explicit* (``--share-ns``),
    else the PMIx namespace (``srun --mpi=pmix``, Open MPI's ``mpirun``),
    else Open MPI's job id, else Slurm's job and step; None outside a job."""
    if explicit:
        return f"key:{explicit}"
    if environ.get("PMIX_NAMESPACE"):
        return f"pmix:{environ['PMIX_NAMESPACE']}"
    if environ.get("OMPI_MCA_ess_base_jobid"):
        return f"ompi:{environ['OMPI_MCA_ess_base_jobid']}"
    job, step = environ.get("SLURM_JOB_ID"), environ.get("SLURM_STEP_ID")
    if job and step:
        return f"slurm:{job}.{step}"
    return None


def parent_key() -> str:
    """Apptainer's ``--sharens``: the containers of one parent process share
    (its start time guards against a recycled PID)."""
    parent = os.getppid()
    identity = _process_identity(parent)
    return f"parent-{parent}-{identity[1] if identity else 0}"


def shareable(spec: ContainerSpec) -> bool:
    """Containers that ranks may share: read-only ones.  Not a writable
    sandbox (a build's ``%post``), nor one with a fakeroot(1) database; and
    not a writable root (``--writable-tmpfs``, a writable overlay), whose
    changes each rank expects to be its own."""
    mounts = spec.mounts
    writable_root = mounts.writable_tmpfs or any(not o.readonly for o in mounts.overlays)
    return (spec.share_key is not None and not mounts.writable and not writable_root
            and spec.userns.state is None)


def launch_shared(spec: ContainerSpec) -> int:
    """Run *spec* in the container its ranks share; its exit status."""
    meeting = _meet(spec) if shareable(spec) else None
    if meeting is None:
        return launch(spec, _run)
    try:
        if meeting.owner is not None:
            return _join(spec, meeting.owner, meeting.fd)
        return launch(spec, meeting.serve)
    finally:
        meeting.close()


# -- the meeting file -------------------------------------------------------------

class Owner(NamedTuple):
    """The rank that set the container up: its monitor process, the root of
    the tree in its mount namespace, and its namespaces, open."""

    pid: int
    root: str
    namespaces: tuple[tuple[int, int], ...]


class Meeting:
    """This rank's hold on the meeting file: presence, and the door while
    setting up (*owner* None) or, for the first rank, tearing down."""

    def __init__(self, path: str, fd: int, text: str, owner: Owner | None) -> None:
        self.path = path
        self.fd = fd
        self.text = text
        self.owner = owner
        self.door = owner is None  # a joining rank has let go of it already

    def serve(self, spec: ContainerSpec, plan: Plan) -> int:
        """The first rank's runner, once the tree is built: publish it, run
        the command, then wait for every other rank to leave."""
        self._publish(plan.root)
        try:
            return _run(spec, plan)
        finally:
            _lock(self.fd, fcntl.LOCK_EX, _PRESENCE)  # blocks while any other rank runs
            _lock(self.fd, fcntl.LOCK_EX, _DOOR)
            self.door = True

    def _publish(self, root: str) -> None:
        start = _process_identity(os.getpid())
        if start is None or "\n" in root:
            raise ContainerError("could not publish the shared container")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n{start[1]}\n{root}\n{self.text}".encode(), 0)
        _unlock(self.fd, _DOOR)
        self.door = False

    def close(self) -> None:
        """Leave: remove the file if this rank holds the door (it set the
        container up and failed, or tore it down), then let go of every lock."""
        if self.door:
            _unlink_ours(self.path, self.fd)
        os.close(self.fd)
        if self.door:
            _sweep(os.path.dirname(self.path))


def _meet(spec: ContainerSpec) -> Meeting | None:
    """Find or found the container of *spec*'s ranks (None: run alone)."""
    text = _meeting_text(spec)
    try:
        for _attempt in range(_MAX_ATTEMPTS):
            path = f"{_meeting_dir(spec.mounts.tmpdir)}/{_file_name(spec.share_key or '', text)}"
            fd = _open(path)
            if fd is None:
                continue  # the directory went away with a last rank: make it again
            try:
                return _enter(path, fd, text)
            except _Busy:
                time.sleep(_RETRY_PAUSE)
        raise _NotShared("the meeting file stayed busy")
    except _NotShared as err:
        log.warning("not sharing the container between ranks: %s", err)
    except OSError as err:  # a filesystem without record locks, say
        log.warning("not sharing the container between ranks: %s", err.strerror or err)
    return None


class _Busy(Exception):
    """The meeting file is being torn down: try again in a moment."""


class _NotShared(Exception):
    """Why this rank runs a container of its own."""


def _enter(path: str, fd: int, text: str) -> Meeting | None:
    """Through the door of the meeting file open at *fd*: a Meeting to join
    or to set up, None to run alone; :class:`_Busy` (*fd* closed) to try again."""
    _lock(fd, fcntl.LOCK_EX, _DOOR)
    if os.fstat(fd).st_nlink == 0:  # torn down while we waited
        os.close(fd)
        raise _Busy()
    content = os.pread(fd, _MAX_MEETING, 0).decode("utf-8", "replace")
    published = _parse(content)
    owner: Owner | None = None
    if published is not None:
        pid, start, root, written = published
        if written != text:
            log.debug("meeting file %s is for another container; running alone", path)
            os.close(fd)
            return None
        owner = _verified_owner(pid, start, root)
        if owner is None:
            # Its first rank is gone (killed), or is not who it should be:
            # a new file, so that nothing of the old one is waited for.
            log.debug("meeting file %s names no live rank of this user; replacing it", path)
            _unlink_ours(path, fd)
            os.close(fd)
            raise _Busy()
    if not _try_lock(fd, fcntl.LOCK_SH, _PRESENCE):  # the last rank is tearing it down
        _close_owner(owner)
        os.close(fd)
        raise _Busy()
    meeting = Meeting(path, fd, text, owner)
    if owner is None:
        os.ftruncate(fd, 0)  # a rank killed while setting up may have left a start
        log.debug("setting up the container shared by ranks of %s", path)
    else:
        _unlock(fd, _DOOR)
        log.debug("joining the container of rank process %d", owner.pid)
    return meeting


def _parse(content: str) -> tuple[int, int, str, str] | None:
    """(pid, start time, root, text) as the first rank wrote them; None for
    an empty file, or one a rank killed while writing left unfinished."""
    fields = content.split("\n", 3)
    if len(fields) != 4 or not fields[0].isdigit() or not fields[1].isdigit():
        return None
    return int(fields[0]), int(fields[1]), fields[2], fields[3]


def _meeting_text(spec: ContainerSpec) -> str:
    """What ranks must agree on to share: the key, the user, the node, the
    image file as it is now, and every option that shapes the container
    (not the command, its environment, its working directory inside)."""
    image = os.fstat(spec.image.fd) if spec.image.fd >= 0 else os.stat(spec.image.path)
    shape = spec._replace(
        image=spec.image._replace(fd=-1),
        process=spec.process._replace(action="", argv=(), pwd=None, app=None, shell=None,
                                      no_init=False),
        environment=spec.environment._replace(forced=(), host=()))
    return (f"{spec.share_key}\n{os.geteuid()}\n{os.uname().nodename}\n"
            f"{image.st_dev}:{image.st_ino}:{image.st_size}:{image.st_mtime_ns}\n{shape!r}")


def _file_name(key: str, text: str) -> str:
    """A readable prefix of the key and two checksums of the whole text;
    a collision is caught by comparing the text itself."""
    readable = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)[:64]
    data = text.encode()
    return f"{readable}-{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _meeting_dir(tmpdir: str) -> str:
    """The user's private directory of meeting files in *tmpdir* (made if
    missing); :class:`_NotShared` if the name is taken by anything else."""
    path = f"{tmpdir}/capsa-ranks-{os.geteuid()}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise _NotShared(f"cannot create {path}: {err.strerror}") from err
    info = os.lstat(path)
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
            or info.st_mode & 0o077):
        raise _NotShared(f"{path} is not a private directory of uid {os.geteuid()}")
    return path


def _open(path: str) -> int | None:
    """The meeting file *path*, made if missing; None if its directory is
    gone (the last rank of another key removed it meanwhile)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise _NotShared(f"cannot open {path}: {err.strerror}") from err
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise _NotShared(f"{path} is not a file of uid {os.geteuid()}")
    return fd


def _sweep(directory: str) -> None:
    """Remove meeting files no process holds (left by ranks killed with
    SIGKILL), then the directory if it is empty."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = f"{directory}/{name}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode) and _try_lock(fd, fcntl.LOCK_EX, _DOOR, 2):
                _quietly_unlink(path)
        finally:
            os.close(fd)
    try:
        os.rmdir(directory)
    except OSError:
        return


# -- the first rank, as the others check it -----------------------------------------

def _verified_owner(pid: int, start: int, root: str) -> Owner | None:
    """The namespaces of the monitor *pid*, if it is still the process of
    this user that published them; None if it is gone (the caller then sets
    the container up itself)."""
    if pid <= 0 or _process_identity(pid) != (os.geteuid(), start):
        return None
    namespaces = _namespace_fds(pid)
    if namespaces is None:
        return None
    owner = Owner(pid, root, namespaces)
    # Checked again with the files open: the PID was not recycled meanwhile.
    if _process_identity(pid) != (os.geteuid(), start) or not _created_by_us(namespaces):
        _close_owner(owner)
        return None
    return owner


def _process_identity(pid: int) -> tuple[int, int] | None:
    """(effective uid, start time in clock ticks) of a live process *pid*."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read(4096)
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return uid, int(fields[19])


def _namespace_fds(pid: int) -> tuple[tuple[int, int], ...] | None:
    """Open the namespaces of *pid* that are not ours already; None if it is gone."""
    try:
        return tuple(linux.foreign_namespaces(pid, _NAMESPACES))
    except OSError:
        return None


def _created_by_us(namespaces: tuple[tuple[int, int], ...]) -> bool:
    for fd, kind in namespaces:
        if kind == linux.CLONE_NEWUSER:
            try:
                return linux.namespace_owner(fd) == os.geteuid()
            except OSError:
                return False
    return True  # no user namespace to join: root, in the host's


def _close_owner(owner: Owner | None) -> None:
    if owner is not None:
        for fd, _kind in owner.namespaces:
            os.close(fd)


# -- joining --------------------------------------------------------------------

def _join(spec: ContainerSpec, owner: Owner, presence: int) -> int:
    """Enter the first rank's namespaces, then become the command (see
    :func:`_become_the_command`) or, with a PID namespace or resource limits,
    start it as that rank's monitor starts its own (fork, pivot, exec)."""
    try:
        for fd, kind in owner.namespaces:
            linux.setns(fd, kind)
    except OSError as err:
        raise ContainerError(f"could not join the container of rank process {owner.pid}: "
                             f"{err.strerror}") from err
    finally:
        _close_owner(owner)
    if spec.userns.idmap is not None and spec.userns.idmap.wide:
        os.setgroups([])  # as the first rank: no unmapped host groups
    try:
        plan = _joined_plan(spec, owner.root)
    except NoTestScript:
        log.info("No test script found in container, exiting")
        return 0
    if not spec.namespaces.pid and spec.limits is None:
        _become_the_command(spec, plan, presence)
    try:
        return _run(spec, plan)
    finally:
        if spec.limits is not None:
            from capsa.runtime.cgroups import remove

            remove(spec.limits)


def _become_the_command(spec: ContainerSpec, plan: Plan, presence: int) -> NoReturn:
    """Pivot into the tree and exec the command in this very process: a
    joining rank needs no monitor of its own (the first rank's holds the
    mounts), so the launcher's child is the program itself, and N ranks cost
    one capsa process, not N.  The meeting file stays open across the exec,
    with its presence lock, until the program ends."""
    os.set_inheritable(presence, True)
    sys.stdout.flush()
    sys.stderr.flush()

    def body() -> int:
        enter_tree(plan)
        linux.set_parent_death_signal(0)  # the launcher is no monitor to die with
        _exec(spec, plan)
        return 255  # not reached: _exec replaces the process or raises

    children.run_as_child(body)  # not a fork here: it ends this process with one FATAL line


def _joined_plan(spec: ContainerSpec, root: str) -> Plan:
    """This rank's command, environment and working directory in the tree
    at *root* (built by the first rank: nothing is mounted here)."""
    tree = Tree(None, spec)  # type: ignore[arg-type]  # no session: nothing to mount
    tree.root = root
    return tree.finish()


# -- locks ----------------------------------------------------------------------

def _lock(fd: int, how: int, byte: int) -> None:
    fcntl.lockf(fd, how, 1, byte)


def _try_lock(fd: int, how: int, byte: int, length: int = 1) -> bool:
    try:
        fcntl.lockf(fd, how | fcntl.LOCK_NB, length, byte)
    except OSError:  # EAGAIN or EACCES: held by another process
        return False
    return True


def _unlock(fd: int, byte: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, byte)


def _unlink_ours(path: str, fd: int) -> None:
    """Remove *path* if it still names the file open at *fd* (another rank
    may have replaced a file it found stale)."""
    try:
        if os.path.samestat(os.stat(path), os.fstat(fd)):
            os.unlink(path)
    except OSError:
        return


def _quietly_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        return


__all__ = ["JOB_VARIABLES", "job_key", "launch_shared", "shareable"]
