"""Child processes: the one way capsa starts, watches, signals and reaps them.

Programs that run to completion (``tar``, ``unsquashfs``, ``gpg``...) go
through :mod:`capsa.proc`'s runner.  Everything else does so here:

- :func:`fork` runs a function in a child that ends with the function's
  status (a failure is one FATAL line and 255), never returning to the
  caller's stack: the container's first process, an instance's monitor, a
  reader of an image's metadata, the prefetcher;
- :func:`spawn` execs a long-lived program (the FUSE server);
- :func:`monitor` waits for one child while forwarding the signals sent to
  this process, as Apptainer's monitor does, and returns its status
  (``128 + N`` for a death by signal N);
- :meth:`Child.stop` signals a child and reaps it, never signalling a pid
  that was reaped already (it may belong to another process by then);
  :func:`stop_all` does so for every child still running, on the way out.

By default a child dies with its parent (``PR_SET_PDEATHSIG``): nothing
capsa starts outlives a ``kill -9`` of the process that started it, except
what is meant to (an instance's detached monitor).

On the exec path: ``os`` and ``signal`` only.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from capsa import linux, report
from capsa.errors import CapsaError

log = report.getLogger("capsa.children")

# What a monitor passes on to its child; SIGCHLD tells it the child changed.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGCHLD)
_SI_KERNEL = 0x80  # sent by the kernel (the terminal signals the whole group itself)

_live: dict[int, Child] = {}


class Child:
    """A child process of ours, until it is reaped."""

    __slots__ = ("pid", "status")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None
        _live[pid] = self

    def poll(self) -> int | None:
        """Its exit status if it has ended (reaping it), else None."""
        if self.status is None:
            try:
                pid, raw = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self._reaped(255)  # reaped elsewhere (a loop over waitpid(-1))
                return self.status
            if pid:
                self._reaped(exit_status(raw))
        return self.status

    def wait(self) -> int:
        """Its exit status, once it has ended."""
        if self.status is None:
            try:
                _pid, raw = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self._reaped(255)
            else:
                self._reaped(exit_status(raw))
        assert self.status is not None
        return self.status

    def stop(self, signum: int = signal.SIGKILL, grace: float = 0.0) -> int:
        """Signal it (if it still runs), then reap it: with *grace*, SIGKILL
        after that many seconds if *signum* did not end it."""
        if self.poll() is None:
            self.signal(signum)
            deadline = time.monotonic() + grace
            while grace and self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.poll() is None and signum != signal.SIGKILL:
                self.signal(signal.SIGKILL)
        return self.wait()

    def signal(self, signum: int) -> None:
        """Send *signum*, unless it has been reaped."""
        if self.status is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                return

    def _reaped(self, status: int) -> None:
        self.status = status
        _live.pop(self.pid, None)


def exit_status(raw: int) -> int:
    """A wait status as a shell shows it: the exit code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(raw)
    return 128 - code if code < 0 else code


def fork(body: Callable[[], int], *, die_with_parent: bool = True) -> Child:
    """Run *body* in a child process; it ends with *body*'s status."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _live.clear()  # the parent's children are not ours to stop
        if die_with_parent:
            linux.set_parent_death_signal(signal.SIGKILL)
        run_as_child(body)
    return Child(pid)


def run_as_child(body: Callable[[], int]) -> NoReturn:
    """End this (forked) process with *body*'s status; a failure is one FATAL
    line and status 255.  Never returns to the caller's stack (the parent's
    cleanup must not run twice)."""
    code = 255
    try:
        code = body()
    except CapsaError as err:
        log.critical("%s", err)
    except BaseException as err:
        log.critical("%s: %s", type(err).__name__, err)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def spawn(argv: Sequence[str], *, keep_fds: Sequence[int] = (), stdio: bool = False,
          env: Mapping[str, str] | None = None, die_with_parent: bool = True) -> Child:
    """Exec *argv* (a full path first) in a child, keeping *keep_fds* open
    in it; with *stdio*, on our standard input and output, else with them
    on /dev/null (its errors still reach our standard error); in *env*, or
    our environment."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            prepare_exec()
            if die_with_parent:
                linux.set_parent_death_signal(signal.SIGKILL)
            for fd in keep_fds:
                os.set_inheritable(fd, True)
            if not stdio:
                null = os.open("/dev/null", os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
            if env is None:
                os.execv(argv[0], list(argv))
            os.execve(argv[0], list(argv), env)
        finally:
            os._exit(127)
    return Child(pid)


def block_forwarded() -> None:
    """Hold the forwarded signals for :func:`monitor` (before forking the
    child, so that none is lost in between); children unblock them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def unblock_all() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def prepare_exec() -> None:
    """In a child about to exec another program: the forwarded signals back
    to their default action (a handler of the parent's, such as the CLI's
    cleanup on SIGTERM, must not run in the child between here and the exec;
    an ignored signal stays ignored, as exec keeps it), then unblocked."""
    for signum in FORWARDED:
        if callable(signal.getsignal(signum)):
            signal.signal(signum, signal.SIG_DFL)
    unblock_all()


def monitor(child: Child) -> int:
    """Wait for *child*, forwarding the signals sent to us (blocked by
    :func:`block_forwarded`); reap every other child that ends meanwhile;
    *child*'s status."""
    while True:
        info = signal.sigwaitinfo(FORWARDED)
        if info.si_signo != signal.SIGCHLD:
            if info.si_code != _SI_KERNEL:
                child.signal(info.si_signo)
            continue
        status, _others = reap(child.pid)
        if status is not None:
            child._reaped(status)
            return status


def reap(main: int) -> tuple[int | None, bool]:
    """Collect every finished child: the status of *main* if it was one, and
    whether any child is left."""
    status = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status, False
        if pid == 0:
            return status, True
        known = _live.get(pid)
        if known is not None:
            known._reaped(exit_status(raw))
        if pid == main:
            status = exit_status(raw)


def signal_pid(pid: int, signum: int) -> None:
    """*signum* to *pid* (or a group, or -1: every process we may signal),
    which need not be a child of ours; gone is fine."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return


def stop_all(signum: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Stop every child of ours still running: *signum* to all of them, a
    moment to end, then SIGKILL (a build's nested container gets the chance
    to clean up after itself)."""
    children = list(_live.values())
    for child in children:
        child.signal(signum)
    deadline = time.monotonic() + grace
    while any(c.poll() is None for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in children:
        child.stop()
