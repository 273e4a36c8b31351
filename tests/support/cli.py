"""Running the capsa command line the way a user does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from support.env import VENV
from support.site import ENTRY_MODULE, wants_site
from support.users import User


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n-> {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


PROGRAMS = ("apptainer", "singularity", "run-singularity")
_PROGRAM = """#!{python}
import sys
sys.path.insert(0, {source!r})
from capsa.cli.main import {entry}
{entry}()
"""


def write_programs(source: Path) -> Path:
    """``<source>/bin/{apptainer,singularity,run-singularity}``: the names
    clients call, running this copy of capsa (as the installed commands do,
    ``sys.argv[0]`` names the program).  Put the directory first on PATH
    to have a client program run them."""
    bin_dir = source / "bin"
    bin_dir.mkdir(mode=0o755, exist_ok=True)
    for name in PROGRAMS:
        entry = "run_singularity_entry" if name == "run-singularity" else "entry"
        path = bin_dir / name
        path.write_text(_PROGRAM.format(python=VENV / "bin" / "python", source=str(source),
                                        entry=entry))
        path.chmod(0o755)
    return bin_dir


@dataclass
class Capsa:
    """``capsa`` as *user*, from the world-readable copy of the sources;
    with *program* ``apptainer`` or ``singularity``, under that name."""

    user: User
    pythonpath: Path
    env: dict[str, str] = field(default_factory=dict)
    program: str = "capsa"

    def argv(self, *args: str, site: bool = False) -> list[str]:
        """The command line: capsa from the sources, or *program*
        (``apptainer``...) over them; with *site*, the test entry point that
        takes the site's settings from the environment (see :mod:`support.site`)."""
        if site:
            return [str(VENV / "bin" / "python"), "-m", ENTRY_MODULE, *args]
        if self.program != "capsa":
            return [str(self.pythonpath / "bin" / self.program), *args]
        return [str(VENV / "bin" / "python"), "-m", "capsa", *args]

    def as_program(self, program: str) -> Capsa:
        """The same user and sources, called as *program*."""
        return Capsa(self.user, self.pythonpath, dict(self.env), program)

    def full_env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = self.user.test_env()
        env["PYTHONPATH"] = str(self.pythonpath)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(self.env)
        if extra:
            env.update(extra)
        return env

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        input: str | None = None,
        timeout: float = 300,
        check: bool = False,
    ) -> Result:
        full = self.full_env(env)
        argv = self.user.wrap(self.argv(*args, site=wants_site(full)))
        if argv[0] == "setpriv":
            # setpriv --reset-env would drop our variables: pass them via env(1).
            argv = [*argv[: argv.index("--reset-env") + 1], "env",
                    *(f"{k}={v}" for k, v in full.items()), *argv[argv.index("--reset-env") + 1:]]
            run_env = None
        else:
            run_env = full
        proc = subprocess.run(
            argv,
            env=run_env,
            cwd=str(cwd) if cwd is not None else str(self.user.home),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
        if check:
            assert proc.returncode == 0, str(result)
        return result
