"""Bad input and interrupted pulls: one clear FATAL line, nothing left behind,
nothing a later pull would trust."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support import ocibuild
from support.cli import Capsa
from support.registry import HostileRegistry, Registry


def _env(scratch: Path) -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(scratch)}


def _leftovers(scratch: Path) -> list[str]:
    return sorted(p.name for p in scratch.iterdir() if p.name != "cache")


def _hostile_image(registry: HostileRegistry, name: str, corrupt: str) -> str:
    img = ocibuild.busybox_image()
    blobs = {ocibuild.sha256(img.config): img.config}
    blob = img.layers[0].blob
    if corrupt == "digest":
        blobs[ocibuild.sha256(blob)] = blob[:-10] + b"0123456789"
    elif corrupt == "size":
        blobs[ocibuild.sha256(blob)] = blob[:-100]
    registry.push_raw(name, img.manifest, blobs)
    return f"docker://{registry.host}/{name}:latest"


@pytest.mark.parametrize("corrupt", ["digest", "size"])
def test_corrupt_blob_refused(any_capsa: Capsa, hostile_registry: HostileRegistry,
                              scratch: Path, corrupt: str) -> None:
    ref = _hostile_image(hostile_registry, f"bad/{corrupt}-{any_capsa.user.name}", corrupt)
    result = any_capsa("pull", "--no-https", "x.sif", ref, cwd=scratch, env=_env(scratch))
    assert result.returncode == 255, result
    assert "FATAL" in result.stderr and "Traceback" not in result.stderr
    assert _leftovers(scratch) == []
    blobs = scratch / "cache" / "cache" / "blob" / "blobs" / "sha256"
    layer_hex = ocibuild.sha256(ocibuild.busybox_image().layers[0].blob).split(":")[1]
    assert not (blobs / layer_hex).exists()
    assert not list((scratch / "cache").rglob(".tmp-*"))


def test_artifact_is_not_an_image(capsa: Capsa, hostile_registry: HostileRegistry,
                                  scratch: Path) -> None:
    config = b"{}"
    layer = b"not a container"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                   "digest": ocibuild.sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/tar+gzip", "digest": ocibuild.sha256(layer),
                    "size": len(layer)}]}).encode()
    hostile_registry.push_raw("helm/chart", manifest, [config, layer])
    result = capsa("pull", "--no-https", "x.sif",
                   f"docker://{hostile_registry.host}/helm/chart:latest", cwd=scratch,
                   env=_env(scratch))
    assert result.returncode == 255, result
    assert "FATAL" in result.stderr and "Traceback" not in result.stderr
    assert _leftovers(scratch) == []


def test_killed_pull_leaves_nothing_trusted(capsa: Capsa, images: Any,
                                            scratch: Path) -> None:
    ref = images.ref("test/tricky:latest")
    env = capsa.full_env(_env(scratch))
    for delay in (0.3, 0.6, 0.9):
        proc = subprocess.Popen(capsa.argv("pull", "--no-https", "k.sif", ref), cwd=scratch,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (scratch / "k.sif").exists():  # it finished first: start again
            (scratch / "k.sif").unlink()
    result = capsa("pull", "--no-https", "k.sif", ref, cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    from support.ocibuild import sif_listing

    assert "/data/opaque/upper.txt" in sif_listing(scratch / "k.sif")
    for sif in (scratch / "cache" / "cache" / "oci-tmp").iterdir():
        assert sif.name.startswith(".tmp-") or sif.read_bytes()[:10] == b"#!/usr/bin"


@pytest.mark.needs_root
def test_disk_full_during_conversion(capsa: Capsa, images: Any, scratch: Path) -> None:
    small = scratch / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)],
                   check=True)
    try:
        result = capsa("pull", "--no-https", "--disable-cache", "--tmpdir", str(small),
                       str(small / "x.sif"), images.ref("test/tricky:latest"), cwd=scratch)
        assert result.returncode == 255, result
        assert "FATAL" in result.stderr and "Traceback" not in result.stderr
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_unwritable_cache_is_disabled(capsa_user: Capsa, images: Any, scratch: Path) -> None:
    locked = scratch / "locked"
    locked.mkdir(mode=0o755)
    result = capsa_user("pull", "--no-https", "x.sif", images.ref("test/busybox:latest"),
                        cwd=scratch, env={"APPTAINER_CACHEDIR": str(locked)})
    assert result.returncode == 0, result
    assert "Cache disabled" in result.stderr


def test_token_registry_anonymous_public(capsa: Capsa, token_registry: Registry,
                                         images: Any, scratch: Path) -> None:
    token_registry.push_oci_layout(images.layout("busybox"), "public/busybox:latest")
    result = capsa("pull", "--no-https", "x.sif", token_registry.ref("public/busybox:latest"),
                   cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result


def test_platform_flag(capsa: Capsa, images: Any, scratch: Path) -> None:
    result = capsa("pull", "--no-https", "--platform", "linux/arm64", "a.sif",
                   images.ref("test/multiarch:latest"), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    from support.ocibuild import sif_cat

    assert sif_cat(scratch / "a.sif", "arch.txt") == b"arm64\n"


def test_bad_uri(capsa: Capsa, scratch: Path) -> None:
    result = capsa("pull", "x.sif", "ftp://example.com/x", cwd=scratch)
    assert result.returncode == 255
    assert "unsupported transport type" in result.stderr


def test_corrupt_cache_entries_are_refetched(capsa: Capsa, images: Any,
                                             scratch: Path) -> None:
    ref = images.ref("test/tricky:latest")
    first = capsa("pull", "--no-https", "a.sif", ref, cwd=scratch, env=_env(scratch))
    assert first.returncode == 0, first
    cache = scratch / "cache" / "cache"
    for sif in (cache / "oci-tmp").iterdir():
        sif.write_bytes(b"garbage")  # a SIF that does not open
    for blob in (cache / "blob" / "blobs" / "sha256").iterdir():
        size = blob.stat().st_size
        blob.write_bytes(b"x" * size)  # right size, wrong content
    second = capsa("pull", "--no-https", "b.sif", ref, cwd=scratch, env=_env(scratch))
    assert second.returncode == 0, second
    assert "corrupt" in second.stderr
    assert "Using cached SIF image" not in second.stderr
    from support.ocibuild import sif_listing

    assert sif_listing(scratch / "b.sif") == sif_listing(scratch / "a.sif")


def test_registries_conf_search_and_insecure(capsa: Capsa, images: Any, scratch: Path) -> None:
    """An unqualified name found through registries.conf, plain HTTP because
    the registry is marked insecure there (no --no-https)."""
    host = images.registry.host
    conf = scratch / "registries.conf"
    conf.write_text(f'unqualified-search-registries = ["{host}"]\n\n'
                    f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    env = {**_env(scratch), "CONTAINERS_REGISTRIES_CONF": str(conf)}
    result = capsa("pull", "r.sif", "docker://test/busybox:latest", cwd=scratch, env=env)
    assert result.returncode == 0, result
    from support.ocibuild import sif_listing

    assert "/bin/busybox" in sif_listing(scratch / "r.sif")
