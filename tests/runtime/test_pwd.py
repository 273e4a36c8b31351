"""``$PWD`` inside is the container's working directory, never the host's."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns


def test_pwd_follows_the_container_working_directory(any_capsa: Capsa,
                                                     images: dict[str, Path],
                                                     scratch: Path) -> None:
    here = scratch / "x"
    here.mkdir()
    any_capsa.user.own(here)
    env = {"PWD": str(here)}  # what a shell exports after `cd /tmp/x`
    for image in ("sif", "noshell_sif"):
        moved = any_capsa("exec", "-B", f"{here}:/work", "--pwd", "/work", str(images[image]),
                          "env", cwd=here, env=env)
        assert moved.returncode == 0, moved
        assert "PWD=/work\n" in moved.stdout, moved
    shell = any_capsa("exec", "-B", f"{here}:/work", "--pwd", "/work", str(images["sif"]),
                      "sh", "-c", "echo $PWD; pwd", cwd=here, env=env)
    assert (shell.returncode, shell.stdout, shell.stderr) == (0, "/work\n/work\n", ""), shell
    stays = any_capsa("exec", str(images["sif"]), "sh", "-c", "echo $PWD", cwd=here, env=env)
    assert stays.stdout == f"{here}\n", stays
    contained = any_capsa("exec", "--contain", str(images["sif"]), "sh", "-c", "echo $PWD",
                          cwd=here, env=env)
    assert contained.stdout == f"{any_capsa.user.home}\n", contained


def test_pwd_from_apptainer_pwd_variable(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", str(images["sif"]), "sh", "-c", "echo $PWD; pwd",
                       env={"APPTAINER_PWD": "/etc"})
    assert (result.returncode, result.stdout) == (0, "/etc\n/etc\n"), result
