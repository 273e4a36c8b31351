"""``exec|run|shell --fakeroot`` through the CLI, in the three ways it runs:
as root, as a user with subordinate ids (uid 0 is the user, 1..65536 the
range) and as a user without (a root-mapped namespace plus the host's
fakeroot command), on a real Debian image; the image's passwd and group stay
as they are whenever uid 0 runs inside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ocibuild
from support.cli import Capsa
from support.debian import DebianBase, debian_base
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def debian(plain_registry: Registry) -> Iterator[DebianBase]:  # noqa: F811
    yield from debian_base(plain_registry)


def _image_file(sif: Path, path: str) -> str:
    return ocibuild.sif_cat(sif, path).decode()


def _kind(capsa: Capsa) -> str:
    if capsa.user.is_root:
        return "root"
    return "no-subuid" if capsa.user.name.endswith("nosub") else "subuid"


@pytest.mark.parametrize("unsquash", [False, True], ids=["mounted", "extracted"])
def test_uid_maps_and_owners(every_capsa: Capsa, debian: DebianBase, unsquash: bool) -> None:
    flags = ["--unsquash"] if unsquash else []
    result = every_capsa("-v", "exec", "--fakeroot", *flags, str(debian.sif), "sh", "-c",
                         "id -u; id -g; wc -l < /proc/self/uid_map; stat -c %u:%g /etc/shadow")
    assert result.returncode == 0, result
    uid, gid, map_lines, shadow = result.stdout.split()
    assert (uid, gid) == ("0", "0")
    kind = _kind(every_capsa)
    # shadow is root:shadow (gid 42) in the image: real as root and over a
    # subordinate range; faked as root's by fakeroot in a root-mapped namespace.
    assert shadow == {"root": "0:42", "subuid": "0:42", "no-subuid": "0:0"}[kind]
    assert map_lines == {"root": "1", "subuid": "2", "no-subuid": "1"}[kind]
    if kind == "subuid":
        assert "VERBOSE  fakeroot: user namespace uid map 0->" in result.stderr
        assert "(from /etc/subuid and /etc/subgid)" in result.stderr
        assert "root-mapped" not in result.stderr
    if kind == "no-subuid":
        assert "INFO:    User not listed in /etc/subuid, trying root-mapped namespace" \
            in result.stderr
        assert "INFO:    Using fakeroot command combined with root-mapped namespace" \
            in result.stderr


def test_changes_of_owner_work(every_capsa: Capsa, debian: DebianBase) -> None:
    """chown to any id and apt's kind of privilege drop (setgroups, seteuid)."""
    script = ("touch /x && chown 1234:1234 /x && stat -c %u:%g /x && "
              "setpriv --reuid=42 --regid=42 --clear-groups id -u")
    result = every_capsa("exec", "--fakeroot", "--writable-tmpfs", str(debian.sif),
                         "sh", "-c", script)
    assert result.returncode == 0, result
    assert result.stdout.split() == ["1234:1234", "42"]


def test_passwd_and_group_are_the_images(every_capsa: Capsa, debian: DebianBase) -> None:
    result = every_capsa("exec", "--fakeroot", str(debian.sif), "sh", "-c",
                         "cat /etc/passwd; echo ====; cat /etc/group")
    assert result.returncode == 0, result
    passwd, group = result.stdout.split("====\n")
    assert passwd == _image_file(debian.sif, "/etc/passwd")
    assert group == _image_file(debian.sif, "/etc/group")
    assert every_capsa.user.name not in passwd or every_capsa.user.is_root


def test_root_without_fakeroot_keeps_passwd(capsa: Capsa, debian: DebianBase) -> None:
    if not capsa.user.is_root:
        pytest.skip("needs root")
    result = capsa("exec", str(debian.sif), "cat", "/etc/passwd")
    assert (result.returncode, result.stdout) == (0, _image_file(debian.sif, "/etc/passwd"))


def test_user_without_fakeroot_gets_a_generated_passwd(capsa_user: Capsa,
                                                       debian: DebianBase) -> None:
    result = capsa_user("exec", str(debian.sif), "grep", f"^{capsa_user.user.name}:",
                        "/etc/passwd")
    assert result.returncode == 0, result


def test_ignore_subuid_gives_the_root_mapped_namespace(capsa_user: Capsa,
                                                       debian: DebianBase) -> None:
    result = capsa_user("exec", "--fakeroot", "--ignore-subuid", str(debian.sif), "sh", "-c",
                        "wc -l < /proc/self/uid_map; echo $LD_PRELOAD")
    assert result.returncode == 0, result
    assert result.stdout.split() == ["1", "/.singularity.d/libs/libfakeroot.so"]


def test_without_the_fakeroot_command_only_the_namespace(capsa_nosub: Capsa,
                                                         debian: DebianBase) -> None:
    result = capsa_nosub("exec", "--fakeroot", "--ignore-fakeroot-command", "--writable-tmpfs",
                         str(debian.sif), "sh", "-c",
                         "id -u; touch /x; chown 1234 /x 2>&1 || echo refused")
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[0] == "0"
    assert result.stdout.splitlines()[-1] == "refused"
    assert "fakeroot command not found, using only root-mapped namespace" in result.stderr


def test_static_image_runs_root_mapped(capsa_nosub: Capsa, images: dict[str, Path]) -> None:
    """busybox has no C library for the host's fakeroot: the namespace alone."""
    result = capsa_nosub("exec", "--fakeroot", str(images["sif"]), "id", "-u")
    assert (result.returncode, result.stdout) == (0, "0\n"), result
    assert "the fakeroot command cannot run in this container" in result.stderr


def test_shell_and_run_use_the_same_mapping(capsa_user: Capsa, debian: DebianBase) -> None:
    shell = capsa_user("shell", "--fakeroot", str(debian.sif), input="wc -l < /proc/self/uid_map\n")
    assert (shell.returncode, shell.stdout.strip()) == (0, "2"), shell
    run = capsa_user("run", "--fakeroot", str(debian.sif), input="wc -l < /proc/self/uid_map\n")
    assert (run.returncode, run.stdout.strip()) == (0, "2"), run
