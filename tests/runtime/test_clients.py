"""The command lines Snakemake and Nextflow generate (docs/clients.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.runtime.conftest import full_argv

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns


def test_nextflow_almost_empty_environment(any_capsa: Capsa, images: dict[str, Path],
                                           scratch: Path) -> None:
    workdir = scratch / "work dir"
    workdir.mkdir()
    (workdir / ".command.sh").write_text("echo task ran in $(pwd) as $(id -un); echo $TMPV\n")
    any_capsa.user.own(workdir)
    inner = full_argv(any_capsa, "exec", "--no-home", "--pid", "-B", str(workdir),
                      str(images["sif"]), "/bin/sh", "-c",
                      f'cd "{workdir}"; /bin/sh -ue .command.sh')
    # env - PATH="$PATH" APPTAINERENV_TMPV=x apptainer ...: no HOME, USER, TMPDIR.
    at = inner.index("env")
    argv = [*inner[:at], "env", "-i", "PATH=/usr/bin:/bin",
            f"PYTHONPATH={any_capsa.pythonpath}", "APPTAINERENV_TMPV=injected",
            *inner[inner.index("-m") - 1:]]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=str(workdir), check=False)
    assert done.returncode == 0, done
    assert done.stdout == f"task ran in {workdir} as {any_capsa.user.name}\ninjected\n"
    assert done.stderr == ""


def test_snakemake_command_line(any_capsa: Capsa, images: dict[str, Path],
                                scratch: Path) -> None:
    any_capsa.user.own(scratch)
    result = any_capsa("--quiet", "--silent", "exec", "--home", str(scratch), "--bind",
                       str(scratch), "--pwd", str(scratch), str(images["sif"]), "sh", "-c",
                       "echo $K1 $HOME; pwd", cwd=scratch,
                       env={"SINGULARITYENV_K1": "V1"})
    assert result.returncode == 0, result
    assert result.stdout == f"V1 {scratch}\n{scratch}\n"
    assert result.stderr == ""


def test_nextflow_resource_limits_are_accepted(any_capsa: Capsa,
                                               images: dict[str, Path]) -> None:
    # applied where the host gives a cgroup, else a warning only a terminal sees:
    # either way the job's output alone (tests/runtime/test_resource_limits.py)
    result = any_capsa("exec", "--no-home", "--pid", "--cpus", "2", "--memory", "1G",
                       str(images["sif"]), "echo", "ok")
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", ""), result
