"""/.singularity.d: the runscript and environment scripts, the metadata entries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from capsa.rootfs.singularity_d import docker_env_script, metadata_entries, runscript


def _run_script(tmp_path: Path, script: str, *args: str, env: dict[str, str] | None = None
                ) -> str:
    path = tmp_path / "script"
    path.write_text(script)
    return subprocess.run(["/bin/sh", str(path), *args], capture_output=True, text=True,
                          env=env or {"PATH": "/usr/bin:/bin"}, check=True).stdout


@pytest.mark.parametrize(("entrypoint", "cmd", "args", "expected"), [
    (["/bin/echo", "ep"], ["c1", "c 2"], [], "ep c1 c 2\n"),
    (["/bin/echo", "ep"], ["c1"], ["x y"], "ep x y\n"),
    ([], ["/bin/echo", "only cmd"], [], "only cmd\n"),
    ([], ["/bin/echo", "only cmd"], ["/bin/echo", "args"], "args\n"),
    (["/bin/echo"], [], ["it's"], "it's\n"),
])
def test_runscript(tmp_path: Path, entrypoint: list[str], cmd: list[str], args: list[str],
                   expected: str) -> None:
    script = runscript(entrypoint, cmd)
    assert _run_script(tmp_path, script, *args) == expected
    no_eval = {"PATH": "/usr/bin:/bin", "APPTAINER_NO_EVAL": "1"}
    assert _run_script(tmp_path, script, *args, env=no_eval) == expected


def test_runscript_no_eval_keeps_dollar(tmp_path: Path) -> None:
    script = runscript(["/bin/echo"], ["$HOME"])
    env = {"PATH": "/usr/bin:/bin", "HOME": "/h", "APPTAINER_NO_EVAL": "1"}
    assert _run_script(tmp_path, script, env=env) == "$HOME\n"
    assert _run_script(tmp_path, script, env={"PATH": "/bin", "HOME": "/h"}) == "$HOME\n"


def test_docker_env_host_wins_but_path(tmp_path: Path) -> None:
    script = docker_env_script(["PATH=/opt/bin:/bin", "A=image", "B=with \"quotes\" $x",
                                "EMPTY", "bad-name=1"])
    assert "bad-name" not in script
    check = script + 'echo "$PATH|$A|$B|$EMPTY"\n'
    out = _run_script(tmp_path, check, env={"PATH": "/host", "A": "host"})
    assert out == '/opt/bin:/bin|host|with "quotes" $x|\n'


def test_metadata_entries_modes() -> None:
    entries = {e.info.name: e for e in metadata_entries({"Labels": {"a": "b"}})}
    assert ".singularity.d/Singularity" not in entries
    assert entries[".singularity.d/runscript"].info.mode == 0o755
    assert entries[".singularity.d/labels.json"].data == b'{\n\t"a": "b"\n}'
    assert entries["etc/hosts"].data == b""
    assert all(e.info.uid == 0 for e in entries.values())
    built = {e.info.name: e for e in metadata_entries(
        {"Labels": {"org.label-schema.build-arch": "image's"}}, arch="arm64",
        deffile={"bootstrap": "docker", "from": "alpine"})}
    labels = json.loads(built[".singularity.d/labels.json"].data)
    assert labels["org.label-schema.build-arch"] == "image's"
    assert labels["org.label-schema.usage.singularity.deffile.from"] == "alpine"
    assert built[".singularity.d/Singularity"].data == b"bootstrap: docker\nfrom: alpine\n"
