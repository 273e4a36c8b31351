"""The one choke point for running external programs.

Library code never calls :mod:`subprocess` directly: it takes a
:class:`Runner` (default :data:`DEFAULT_RUNNER`) so tests can hand in a fake.
A missing program becomes :class:`capsa.errors.ToolError`, never a traceback.
Where a program is (``which``) is :mod:`capsa.programs`' business.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

from capsa import programs, report
from capsa.errors import ToolError

log = report.getLogger("capsa.proc")


@dataclass(frozen=True, slots=True)
class Completed:
    """What a finished program left: its argv, status and captured output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


class Runner(Protocol):
    """Runs a program to completion."""

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: IO[Any] | int | None = None,
        stdout: IO[Any] | int | None = None,
    ) -> Completed: ...


def child_env(drop_prefix: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a program capsa runs: capsa's own (a tool needs
    PATH, HOME, the locale...) less the variables starting *drop_prefix*,
    plus *extra*.  Library code composes children's environments only here."""
    env = {k: v for k, v in os.environ.items()
           if drop_prefix is None or not k.startswith(drop_prefix)}
    env.update(extra)
    return env


class SubprocessRunner:
    """The real :class:`Runner`, over :func:`subprocess.run`."""

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: IO[Any] | int | None = None,
        stdout: IO[Any] | int | None = None,
    ) -> Completed:
        log.debug("running %s", " ".join(argv))
        out_target = stdout if stdout is not None else (subprocess.PIPE if capture else None)
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if input is not None else stdin,
                stdout=out_target,
                stderr=subprocess.PIPE if capture else None,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        except FileNotFoundError as err:
            raise ToolError(programs.missing(argv[0])) from err
        except PermissionError as err:
            raise ToolError(f"cannot run {argv[0]}: {err.strerror}") from err
        with proc:
            try:
                out, err_out = proc.communicate(input)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP turned into one
                _let_finish(proc)
                raise
            except BaseException:
                proc.kill()
                raise
        done = Completed(tuple(argv), proc.returncode, out or b"", err_out or b"")
        if check and proc.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            last = detail[-1] if detail else f"exit status {proc.returncode}"
            raise ToolError(f"{os.path.basename(argv[0])} failed: {last}")
        return done


def _let_finish(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """We are being interrupted: so is *proc*, which gets SIGTERM (if the
    signal did not reach it already) and a moment to clean up after itself
    (a nested capsa removes its session), then SIGKILL."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


DEFAULT_RUNNER: Runner = SubprocessRunner()
