"""The container's environment, home, working directory and binds, through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns


def _env(result_stdout: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in result_stdout.splitlines() if "=" in line)
    return {k: v for k, _, v in pairs}


def test_environment_rules(any_capsa: Capsa, images: dict[str, Path], scratch: Path) -> None:
    env_file = scratch / "vars"
    env_file.write_text("FROM_FILE=file\nOVERRIDDEN=file\n")
    extra = {"HOST_VAR": "host", "APPTAINERENV_INJECTED": "a", "SINGULARITYENV_LEGACY": "s",
             "APPTAINERENV_FROM_IMAGE": "injected wins", "APPTAINERENV_PREPEND_PATH": "/pre",
             "LD_LIBRARY_PATH": "/host/lib", "APPTAINER_SOMETHING": "x"}
    result = any_capsa("exec", "--env-file", str(env_file), "--env", "OVERRIDDEN=flag",
                       str(images["sif"]), "env", env=extra)
    assert result.returncode == 0, result
    assert result.stderr == ""
    env = _env(result.stdout)
    assert env["HOST_VAR"] == "host"
    assert env["INJECTED"] == "a" and env["LEGACY"] == "s"
    assert env["FROM_IMAGE"] == "injected wins"
    assert env["FROM_FILE"] == "file" and env["OVERRIDDEN"] == "flag"
    assert env["PATH"] == "/pre:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["IMAGE_PATH_SEEN"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["LD_LIBRARY_PATH"] == "/.singularity.d/libs"
    assert env["HOME"] == str(any_capsa.user.home)
    assert env["APPTAINER_NAME"] == "busybox.sif"
    assert "APPTAINER_SOMETHING" not in env


def test_both_prefixes_warn(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", str(images["sif"]), "sh", "-c", "echo $X",
                       env={"SINGULARITYENV_X": "old", "APPTAINERENV_X": "new"})
    assert result.stdout == "new\n"
    assert result.stderr.startswith("WARNING: ")


def test_cleanenv(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", "--cleanenv", str(images["sif"]), "env",
                       env={"HOST_VAR": "host", "http_proxy": "proxy", "TERM": "dumb"})
    env = _env(result.stdout)
    assert "HOST_VAR" not in env
    assert env["http_proxy"] == "proxy" and env["LANG"] == "C" and env["TERM"] == "dumb"
    assert env["FROM_IMAGE"] == "image value"


def test_binds(any_capsa: Capsa, images: dict[str, Path], scratch: Path) -> None:
    (scratch / "in.txt").write_text("data\n")
    sif = str(images["sif"])
    script = "cat /data/in.txt /new/point/in.txt /mnt2/in.txt; touch /ro/x 2>&1 || echo ro-ok"
    result = any_capsa("exec", "-B", f"{scratch}:/data,{scratch}:/new/point",
                       "--bind", f"{scratch}:/ro:ro", "--mount",
                       f"type=bind,source={scratch},destination=/mnt2", sif, "sh", "-c",
                       script)
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[:3] == ["data"] * 3
    assert result.stdout.splitlines()[-1] == "ro-ok"


def test_bind_from_environment(any_capsa: Capsa, images: dict[str, Path],
                               scratch: Path) -> None:
    (scratch / "f").write_text("x\n")
    result = any_capsa("exec", str(images["sif"]), "sh", "-c",
                       "cat /envbind/f; echo $APPTAINER_BIND",
                       env={"APPTAINER_BIND": f"{scratch}:/envbind"})
    assert result.stdout == "x\n/envbind\n", result


def test_home_and_working_directory(any_capsa: Capsa, images: dict[str, Path],
                                    scratch: Path) -> None:
    sif = str(images["sif"])
    inside = any_capsa("exec", sif, "pwd", cwd=scratch)
    assert inside.stdout == f"{scratch}\n", inside
    pwd = any_capsa("exec", "--pwd", "/etc", sif, "pwd")
    assert pwd.stdout == "/etc\n"
    (scratch / "marker").touch()
    custom = any_capsa("exec", "-H", f"{scratch}:/myhome", sif, "sh", "-c",
                       "echo $HOME; ls /myhome", cwd=scratch)
    assert custom.stdout.split() == ["/myhome", "marker"], custom
    no_home = any_capsa("exec", "--no-home", sif, "sh", "-c",
                        f"ls {any_capsa.user.home} 2>/dev/null | wc -l")
    assert no_home.returncode == 0


def test_contain(any_capsa: Capsa, images: dict[str, Path], scratch: Path) -> None:
    (scratch / "visible").touch()
    result = any_capsa("exec", "--contain", str(images["sif"]), "sh", "-c",
                       f"pwd; ls -A $HOME | wc -l; ls /tmp | wc -l; ls {scratch} 2>&1 | "
                       "grep -c visible; ls /dev | wc -l", cwd=scratch)
    assert result.returncode == 0, result
    cwd, home_count, tmp_count, visible, dev_count = result.stdout.split()
    assert cwd == str(any_capsa.user.home)
    assert (home_count, tmp_count, visible) == ("0", "0", "0")
    assert int(dev_count) < 20


def test_containall_cleans_environment(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", "-C", str(images["sif"]), "sh", "-c", "echo ${HOST_VAR:-unset} $$",
                       env={"HOST_VAR": "x"})
    assert result.stdout.split() == ["unset", "2"], result


def test_identity_files(any_capsa: Capsa, images: dict[str, Path]) -> None:
    result = any_capsa("exec", str(images["sif"]), "sh", "-c",
                       "grep ^$(id -un): /etc/passwd; grep -c ^root: /etc/passwd")
    user = any_capsa.user
    line, roots = result.stdout.splitlines()
    assert line.startswith(f"{user.name}:x:{user.uid}:{user.gid}:")
    assert line.split(":")[5] == str(user.home)
    assert roots == "1"


def test_workdir_scratch_and_no_env(any_capsa: Capsa, images: dict[str, Path],
                                    scratch: Path) -> None:
    workdir = scratch / "work"
    workdir.mkdir()
    any_capsa.user.own(workdir)
    result = any_capsa("exec", "-c", "-W", str(workdir), "-S", "/scratch1,/scratch2",
                       "--no-env", "SECRET", str(images["sif"]), "sh", "-c",
                       "touch /tmp/t $HOME/h /scratch1/s; ls /scratch2 | wc -l; "
                       "echo ${SECRET:-none} $KEPT", env={"SECRET": "x", "KEPT": "k"})
    assert result.returncode == 0, result
    assert result.stdout.split() == ["0", "none", "k"]
    assert (workdir / "tmp" / "t").exists() and (workdir / "home" / "h").exists()
    assert (workdir / "scratch-0" / "s").exists()


@pytest.mark.parametrize("key", ["sif", "noshell_sif"])
def test_injected_values_refer_to_container_variables(any_capsa: Capsa,
                                                      images: dict[str, Path],
                                                      key: str) -> None:
    extra = {"APPTAINERENV_LD_LIBRARY_PATH": "$LD_LIBRARY_PATH:/opt/lib",
             "APPTAINERENV_WHERE": "$FROM_IMAGE in $HOME", "APPTAINERENV_RAW": "$(id -u)"}
    result = any_capsa("exec", str(images[key]), "env", env=extra)
    values = _env(result.stdout)
    assert values["LD_LIBRARY_PATH"] == "/opt/lib:/.singularity.d/libs", result
    assert values["WHERE"] == f"image value in {any_capsa.user.home}"
    assert values["RAW"] == "$(id -u)"
    literal = any_capsa("exec", "--no-eval", str(images[key]), "env", env=extra)
    assert _env(literal.stdout)["WHERE"] == "$FROM_IMAGE in $HOME"
