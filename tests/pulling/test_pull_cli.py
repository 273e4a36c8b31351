"""``capsa pull`` through the command line, as root and as an unprivileged user."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from support.cli import Capsa
from support.ocibuild import partition_offset, sif_cat, sif_listing
from support.registry import Registry


def _env(scratch: Path, **extra: str) -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / "cache"), **extra}


def test_pull_busybox_default_name(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    result = any_capsa("pull", "--no-https", images.ref("test/busybox:latest"),
                       cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    sif = scratch / "busybox_latest.sif"
    assert sif.is_file()
    assert "Converting OCI blobs to SIF format" in result.stderr
    listing = sif_listing(sif)
    assert listing["/bin/busybox"] == ("-rwxr-xr-x", "0/0")
    assert "/.singularity.d/runscript" in listing
    assert listing["/etc/hosts"][0] == "-rw-r--r--"
    env_script = sif_cat(sif, ".singularity.d/env/10-docker2singularity.sh").decode()
    assert 'export GREETING="${GREETING:-"hello world"}"' in env_script
    assert 'export PATH="/usr/local/sbin:' in env_script
    labels = json.loads(sif_cat(sif, ".singularity.d/labels.json"))
    assert labels["org.capsa.test"] == "busybox"
    assert labels["org.label-schema.build-arch"] == "amd64"
    assert labels["org.label-schema.usage.singularity.deffile.bootstrap"] == "docker"
    assert labels["org.label-schema.usage.singularity.deffile.from"].endswith(
        "test/busybox:latest")
    deffile = sif_cat(sif, ".singularity.d/Singularity").decode()
    assert deffile.startswith("bootstrap: docker\nfrom: 127.0.0.1:")


def test_pull_refuses_existing_then_force(any_capsa: Capsa, images: Any,
                                          scratch: Path) -> None:
    target = scratch / "out.sif"
    target.write_text("precious")
    any_capsa.user.own(target)
    ref = images.ref("test/busybox:latest")
    result = any_capsa("pull", "--no-https", "out.sif", ref, cwd=scratch, env=_env(scratch))
    assert result.returncode == 255
    assert 'FATAL:   Image file already exists: "out.sif" - will not overwrite' in result.stderr
    assert target.read_text() == "precious"
    result = any_capsa("pull", "--force", "--no-https", "out.sif", ref, cwd=scratch,
                       env=_env(scratch))
    assert result.returncode == 0, result
    assert target.read_bytes().startswith(b"#!/usr/bin/env run-singularity")


def test_second_pull_uses_cache(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    ref = images.ref("test/busybox:latest")
    first = any_capsa("pull", "--no-https", "a.sif", ref, cwd=scratch, env=_env(scratch))
    assert first.returncode == 0, first
    second = any_capsa("pull", "--no-https", "b.sif", ref, cwd=scratch, env=_env(scratch))
    assert second.returncode == 0, second
    assert "Using cached SIF image" in second.stderr
    assert (scratch / "a.sif").read_bytes() == (scratch / "b.sif").read_bytes()
    cache = scratch / "cache" / "cache"
    assert stat_mode(cache) == 0o700
    assert list((cache / "oci-tmp").iterdir())
    assert not [p for p in cache.rglob(".tmp-*")]


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_nohttps_from_environment_and_disable_cache(any_capsa: Capsa, images: Any,
                                                    scratch: Path) -> None:
    env = _env(scratch, APPTAINER_NOHTTPS="1", APPTAINER_DISABLE_CACHE="1")
    result = any_capsa("pull", "x.sif", images.ref("test/busybox:latest"), cwd=scratch,
                       env=env)
    assert result.returncode == 0, result
    assert (scratch / "x.sif").is_file()
    assert not (scratch / "cache" / "cache" / "oci-tmp").exists()


@pytest.mark.parametrize("name", ["img.simg", "sub/127.0.0.1-busybox.img.pulling.123"])
def test_pull_name_any_extension(capsa: Capsa, images: Any, scratch: Path,
                                 name: str) -> None:
    (scratch / "sub").mkdir()
    result = capsa("pull", "--no-https", "--name", name, images.ref("test/busybox:latest"),
                   cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert (scratch / name).is_file()


def test_pull_dir(capsa: Capsa, images: Any, scratch: Path) -> None:
    (scratch / "out").mkdir()
    result = capsa("pull", "--no-https", "--dir", str(scratch / "out"),
                   images.ref("test/busybox:latest"), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert (scratch / "out" / "busybox_latest.sif").is_file()


def test_tricky_layers_owners_and_whiteouts(any_capsa: Capsa, images: Any,
                                            scratch: Path) -> None:
    result = any_capsa("pull", "--no-https", "t.sif", images.ref("test/tricky:latest"),
                       cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    listing = sif_listing(scratch / "t.sif")
    assert "/data/gone.txt" not in listing
    assert "/data/olddir" not in listing and "/data/olddir/inner.txt" not in listing
    assert "/data/opaque/lower.txt" not in listing
    assert listing["/data/opaque/upper.txt"][1] == "0/0"
    assert listing["/data/opaque"] == ("drwxr-x---", "1000/1000")
    assert listing["/data/replaced"][0].startswith("-")
    assert "/data/replaced/child.txt" not in listing
    assert listing["/data/user1000.txt"][1] == "1000/1000"
    assert listing["/data/nobody.txt"][1] == "65534/65534"
    assert listing["/data/new.txt"][1] == "1000/100"
    assert listing["/data/setuid"][0] == "-rwsr-xr-x"
    assert listing["/data/fifo"][0].startswith("p")
    assert listing["/data/link-abs"][0].startswith("l")
    assert "WARNING" not in result.stderr
    _check_hard_links_and_xattr(scratch / "t.sif", scratch / "x")


def _check_hard_links_and_xattr(sif: Path, dest: Path) -> None:
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(dest), "-o", str(partition_offset(sif)),
                    str(sif), "data"], check=True, capture_output=True)
    a, b, c = (os.stat(dest / "data" / n) for n in ("hard-a", "hard-b", "hard-c"))
    assert a.st_ino == b.st_ino == c.st_ino
    if os.geteuid() == 0:
        assert os.getxattr(dest / "data" / "xattr.txt", "user.capsa") == b"yes"


def test_runscript_entrypoint_and_cmd(capsa: Capsa, images: Any, scratch: Path) -> None:
    result = capsa("pull", "--no-https", "t.sif", images.ref("test/tricky:latest"),
                   cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    script = sif_cat(scratch / "t.sif", ".singularity.d/runscript").decode()
    assert "OCI_ENTRYPOINT='\"/bin/echo\" \"from entrypoint\"'" in script
    assert "OCI_CMD='\"default arg\"'" in script
    config = _sif_json(scratch / "t.sif")
    assert config["Entrypoint"] == ["/bin/echo", "from entrypoint"]


def _sif_json(sif: Path) -> dict[str, object]:
    from capsa.sif import DataType, SifImage

    with SifImage.open(sif) as image:
        objects = image.select(data_type=DataType.GENERIC_JSON)
        # Apptainer's order: inspect-metadata.json (what it was made from), then the config
        assert [d.name for d in objects] == ["inspect-metadata.json", "oci-config.json"]
        data: dict[str, object] = json.loads(image.read(objects[1]))
        return data


def test_multiarch_arch_flag(capsa: Capsa, images: Any, scratch: Path) -> None:
    from capsa.sif import SifImage

    ref = images.ref("test/multiarch:latest")
    result = capsa("pull", "--no-https", "--arch", "arm64", "arm.sif", ref, cwd=scratch,
                   env=_env(scratch))
    assert result.returncode == 0, result
    assert sif_cat(scratch / "arm.sif", "arch.txt") == b"arm64\n"
    with SifImage.open(scratch / "arm.sif") as image:
        assert image.primary_partition().partition_info()[2] == "04"
    result = capsa("pull", "--no-https", "amd.sif", ref, cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert sif_cat(scratch / "amd.sif", "arch.txt") == b"amd64\n"
    result = capsa("pull", "--no-https", "--arch", "s390x", "s.sif", ref, cwd=scratch,
                   env=_env(scratch))
    assert result.returncode == 255
    assert "linux/amd64" in result.stderr and "linux/arm64" in result.stderr
    assert not (scratch / "s.sif").exists()


def test_unknown_tag_and_host(capsa: Capsa, images: Any, scratch: Path) -> None:
    result = capsa("pull", "--no-https", "x.sif", images.ref("test/busybox:nope"),
                   cwd=scratch, env=_env(scratch))
    assert result.returncode == 255
    assert "FATAL" in result.stderr and "Traceback" not in result.stderr
    result = capsa("pull", "--no-https", "x.sif", "docker://127.0.0.1:1/none:latest",
                   cwd=scratch, env=_env(scratch))
    assert result.returncode == 255
    assert "FATAL" in result.stderr
    assert not (scratch / "x.sif").exists()


def test_local_sources(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    layout = images.layout("busybox")
    result = any_capsa("pull", "a.sif", f"oci:{layout}:latest", cwd=scratch)
    assert result.returncode == 0, result
    archive = scratch / "bb.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    os.chmod(archive, 0o644)
    result = any_capsa("pull", "b.sif", f"oci-archive:{archive}", cwd=scratch)
    assert result.returncode == 0, result
    tagged = any_capsa("pull", "c.sif", f"oci-archive:{archive}:latest", cwd=scratch)
    assert tagged.returncode == 0, tagged
    missing = any_capsa("pull", "d.sif", f"oci-archive:{archive}:nope", cwd=scratch)
    assert missing.returncode == 255 and "nope" in missing.stderr
    assert sif_listing(scratch / "b.sif")["/bin/busybox"][1] == "0/0"


def test_docker_archive(capsa: Capsa, images: Any, scratch: Path) -> None:
    archive = scratch / "docker.tar"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet",
                    f"oci:{images.layout('busybox')}:latest",
                    f"docker-archive:{archive}:test/busybox:latest"], check=True,
                   capture_output=True)
    result = capsa("pull", "d.sif", f"docker-archive:{archive}", cwd=scratch)
    assert result.returncode == 0, result
    named = capsa("pull", "e.sif", f"docker-archive:{archive}:test/busybox:latest",
                  cwd=scratch)
    assert named.returncode == 0, named
    wrong = capsa("pull", "f.sif", f"docker-archive:{archive}:other:1", cwd=scratch)
    assert wrong.returncode == 255 and "other:1" in wrong.stderr
    listing = sif_listing(scratch / "d.sif")
    assert listing["/bin/busybox"] == ("-rwxr-xr-x", "0/0")
    assert sif_cat(scratch / "d.sif", "etc/group").startswith(b"root:x:0:")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-escape", "hardlink-escape",
                                  "through-symlink"])
def test_hostile_layers_confined(capsa: Capsa, images: Any, scratch: Path,
                                 kind: str) -> None:
    result = capsa("pull", "h.sif", f"oci:{images.layout('hostile')}:{kind}", cwd=scratch)
    assert result.returncode == 0, result
    assert "WARNING" in result.stderr
    listing = sif_listing(scratch / "h.sif")
    assert "/ok.txt" in listing
    assert not any(".." in name for name in listing)
    assert not (scratch.parent / "escaped.txt").exists()
    if kind == "absolute":
        assert "/abs/evil.txt" in listing
    if kind == "symlink-escape":
        raw = subprocess.run(["unsquashfs", "-lln", "-o",
                              str(partition_offset(scratch / "h.sif")), str(scratch / "h.sif")],
                             capture_output=True, text=True, check=True).stdout
        assert "squashfs-root/d/out -> /etc/shadow" in raw
    if kind == "through-symlink":
        assert "/etc2/evil" not in listing


@pytest.mark.parametrize("kind", ["truncated-gzip", "not-tar"])
def test_broken_layers_fail_cleanly(any_capsa: Capsa, images: Any, scratch: Path,
                                    kind: str) -> None:
    result = any_capsa("pull", "h.sif", f"oci:{images.layout('hostile')}:{kind}",
                       cwd=scratch, env={"APPTAINER_TMPDIR": str(scratch / "tmp")})
    assert result.returncode == 255, result
    assert "FATAL" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in scratch.iterdir()) in ([], ["tmp"])
    if (scratch / "tmp").exists():
        assert not list((scratch / "tmp").iterdir())


def test_auth_registry_with_env_credentials(capsa: Capsa, auth_registry: Registry,
                                            images: Any, scratch: Path) -> None:
    auth_registry.push_oci_layout(images.layout("busybox"), "private/busybox:latest")
    ref = auth_registry.ref("private/busybox:latest")
    denied = capsa("pull", "--no-https", "x.sif", ref, cwd=scratch, env=_env(scratch))
    assert denied.returncode == 255
    assert "login" in denied.stderr
    env = _env(scratch, APPTAINER_DOCKER_USERNAME=auth_registry.username or "",
               APPTAINER_DOCKER_PASSWORD=auth_registry.password or "")
    result = capsa("pull", "--no-https", "x.sif", ref, cwd=scratch, env=env)
    assert result.returncode == 0, result


def test_mksquashfs_args_gzip(capsa: Capsa, images: Any, scratch: Path) -> None:
    result = capsa("pull", "--no-https", "--disable-cache", "--mksquashfs-args",
                   "-comp gzip", "g.sif", images.ref("test/busybox:latest"), cwd=scratch)
    assert result.returncode == 0, result
    info = subprocess.run(["unsquashfs", "-s", "-o", str(partition_offset(scratch / "g.sif")),
                           str(scratch / "g.sif")], capture_output=True, text=True).stdout
    assert "gzip" in info


def test_concurrent_pulls_share_one_cache(capsa: Capsa, images: Any,
                                          scratch: Path) -> None:
    """N processes at once into one cache: each gets a valid SIF, no leftovers."""
    ref = images.ref("test/tricky:latest")
    env = {**capsa.full_env(_env(scratch))}
    procs = [subprocess.Popen(capsa.argv("pull", "--no-https", f"c{i}.sif", ref), cwd=scratch,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    converted = sum(b"Converting OCI blobs" in err for _out, err in outputs)
    assert converted == 1, outputs
    first = (scratch / "c0.sif").read_bytes()
    for i in range(1, 4):
        assert (scratch / f"c{i}.sif").read_bytes() == first
    assert not list((scratch / "cache").rglob(".tmp-*"))


def test_push_and_pull_oras(any_capsa: Capsa, images: Any, scratch: Path) -> None:
    env = _env(scratch)
    pulled = any_capsa("pull", "--no-https", "b.sif", images.ref("test/busybox:latest"),
                       cwd=scratch, env=env)
    assert pulled.returncode == 0, pulled
    host = images.registry.host
    name = f"sif/busybox-{any_capsa.user.name}:v1"
    pushed = any_capsa("push", "--no-https", "b.sif", f"oras://{host}/{name}", cwd=scratch,
                       env=env)
    assert pushed.returncode == 0, pushed
    back = any_capsa("pull", "--no-https", "back.sif", f"oras://{host}/{name}", cwd=scratch,
                     env=env)
    assert back.returncode == 0, back
    assert (scratch / "back.sif").read_bytes() == (scratch / "b.sif").read_bytes()
    again = any_capsa("pull", "--no-https", "again.sif", f"oras://{host}/{name}",
                      cwd=scratch, env=env)
    assert "Using cached SIF image" in again.stderr
    not_sif = any_capsa("pull", "--no-https", "x.sif", f"oras://{host}/test/busybox",
                        cwd=scratch, env=env)
    assert not_sif.returncode == 255, not_sif
    assert f"FATAL:   oras://{host}/test/busybox is not a SIF artifact (layers: " \
        in not_sif.stderr, not_sif
    assert not (scratch / "x.sif").exists()


def test_cached_image_api(images: Any, scratch: Path) -> None:
    """What ``exec docker://...`` uses: the SIF in the cache, converted once,
    handed over open (the run reads what was checked)."""
    from capsa.content import ContentCache
    from capsa.pulling import PullOptions, open_cached_image
    from capsa.registry import RegistryOptions

    options = PullOptions(cache=ContentCache(scratch / "cache"), tmpdir=scratch,
                          registry=RegistryOptions(no_https=True))
    first = open_cached_image(images.ref("test/busybox:latest"), options)
    assert first.path.parent.name == "oci-tmp" and first.path.is_file()
    again = open_cached_image(images.ref("test/busybox:latest"), options)
    assert again.path == first.path
    assert os.fstat(again.fd).st_ino == os.fstat(first.fd).st_ino == first.path.stat().st_ino
    os.close(first.fd)
    os.close(again.fd)
    assert sif_listing(first.path)["/bin/busybox"][1] == "0/0"


def test_progress_only_on_a_terminal(capsa: Capsa, images: Any, scratch: Path) -> None:
    import shlex
    import shutil

    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    ref = images.ref("test/busybox:latest")
    env = capsa.full_env(_env(scratch))
    inner = " ".join(shlex.quote(a) for a in capsa.argv("pull", "--no-https", "t.sif", ref))
    proc = subprocess.run(["script", "-qec", inner, "/dev/null"], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "Copying blobs [" in proc.stdout
    assert "Creating squashfs [" in proc.stdout
    quiet = capsa("pull", "--no-https", "u.sif", ref, cwd=scratch,
                  env=_env(scratch) | {"APPTAINER_DISABLE_CACHE": "1"})
    assert "Copying blobs" not in quiet.stderr


def test_merged_usr_image(any_capsa: Capsa, scratch: Path) -> None:
    from support.ocibuild import Member, busybox_members, image, layer, write_layout

    base = layer([*busybox_members(), Member("usr/bin", "dir", mode=0o755),
                  Member("sbin", "symlink", link="usr/bin", mode=0o777)])
    top = layer([Member("sbin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755)])
    layout = write_layout(scratch / "layout", "latest", [image([base, top])])
    subprocess.run(["chmod", "-R", "a+rX", str(layout)], check=True)
    result = any_capsa("pull", "m.sif", f"oci:{layout}", cwd=scratch)
    assert result.returncode == 0, result
    listing = sif_listing(scratch / "m.sif")
    assert listing["/sbin"][0].startswith("l")
    assert "/usr/bin/tool" in listing and "/sbin/tool" not in listing
