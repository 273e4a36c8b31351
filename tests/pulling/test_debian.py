"""A real Debian image (debootstrap --variant=minbase bookworm), pulled as root
and as an unprivileged user: every file of the rootfs, owners and modes as
in the image."""

from __future__ import annotations

import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from support import ocibuild
from support.cli import Capsa
from support.env import is_root
from support.registry import Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def debian_ref(plain_registry: Registry, images: Any) -> tuple[str, Path]:
    if not is_root():
        pytest.skip("building the Debian image needs root (debootstrap)")
    try:
        tar = ocibuild.debian_rootfs_tar()
    except (subprocess.CalledProcessError, RuntimeError) as err:
        pytest.skip(f"debootstrap failed here: {err}")
    layout = images.root / "debian"
    ocibuild.debian_layout(layout, "bookworm", parts=3)
    subprocess.run(["chmod", "-R", "a+rX", str(layout)], check=True)
    plain_registry.push_oci_layout(layout, "test/debian:bookworm")
    return plain_registry.ref("test/debian:bookworm"), tar


def test_pull_debian(any_capsa: Capsa, debian_ref: tuple[str, Path], scratch: Path) -> None:
    ref, tar_path = debian_ref
    result = any_capsa("pull", "--no-https", "debian.sif", ref, cwd=scratch,
                       env={"APPTAINER_CACHEDIR": str(scratch / "cache")})
    assert result.returncode == 0, result
    assert "WARNING" not in result.stderr
    listing = ocibuild.sif_listing(scratch / "debian.sif")
    with tarfile.open(tar_path) as tar:
        members = {"/" + m.name.removeprefix("./").rstrip("/"): m for m in tar}
    for name, member in members.items():
        if ocibuild.is_apt_archive(name):
            continue
        if name in ("/", "/.", "/etc/hosts", "/etc/resolv.conf"):
            continue  # the root, and the files every image gets empty
        if name.startswith(("/dev/", "/proc/", "/sys/")):
            continue
        assert name in listing, f"{name} missing from the SIF"
        mode, owner = listing[name]
        assert owner == f"{member.uid}/{member.gid}", name
        if member.isreg():
            assert mode == stat.filemode(member.mode | 0o100000), name
    assert listing["/usr/bin/passwd"] == ("-rwsr-xr-x", "0/0")
    shadow_gid = members["/etc/shadow"].gid
    assert listing["/etc/shadow"][1] == f"0/{shadow_gid}"
    assert "/.singularity.d/env/10-docker2singularity.sh" in listing
