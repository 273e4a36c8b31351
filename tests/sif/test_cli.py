"""`capsa sif ...` through the command line, as root and as a user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sif.corpus import GOLDEN, IMAGES, image_for
from support.cli import Capsa


@pytest.mark.needs_shared
@pytest.mark.parametrize("kind, name", [
    ("list", "TwoGroups"), ("list", "OneGroupSignedPGP"), ("list", "Empty"),
    ("header", "OneGroupSignedLegacyAll"), ("header", "EmptyLaunchScript"),
])
def test_list_and_header_print_the_golden_text(capsa: Capsa, kind: str, name: str) -> None:
    result = capsa("sif", kind, str(IMAGES / image_for(name)))
    assert result.returncode == 0, result
    golden = GOLDEN / f"TestApp_{kind.capitalize()}" / f"{name}.golden"
    assert result.stdout == golden.read_text()
    assert result.stderr == ""


@pytest.mark.needs_shared
def test_info_and_dump(capsa: Capsa) -> None:
    result = capsa("sif", "info", "1", str(IMAGES / "one-object-sbom.sif"))
    assert result.stdout == (GOLDEN / "TestApp_Info" / "SBOM.golden").read_text(), result
    dump = capsa("sif", "dump", "3", str(IMAGES / "one-group-signed-pgp.sif"))
    assert dump.returncode == 0
    assert dump.stdout.startswith("-----BEGIN PGP SIGNED MESSAGE-----")


def test_new_add_list_del_setprim(any_capsa: Capsa, scratch: Path) -> None:
    image = str(scratch / "a.sif")
    payload = scratch / "rootfs.img"
    payload.write_bytes(b"hsqs" + bytes(100))
    os.chmod(payload, 0o644)
    assert any_capsa("sif", "new", image).returncode == 0
    ok = any_capsa("sif", "add", image, str(payload), "--datatype", "4", "--parttype", "1",
                   "--partfs", "1", "--partarch", "2", "--groupid", "1")
    assert ok.returncode == 0, ok
    ok = any_capsa("sif", "add", image, str(payload), "--datatype", "6", "--link", "1",
                   "--filename", "meta.json")
    assert ok.returncode == 0, ok
    listing = any_capsa("sif", "list", image).stdout.splitlines()
    assert listing[3] == ("1    |1       |NONE    |32768-32872               "
                          "|FS (Squashfs/System/amd64)")
    assert listing[4] == "2    |NONE    |1       |32872-32976               |JSON.Generic"
    assert any_capsa("sif", "setprim", "1", image).returncode == 0
    assert "Primary Architecture: amd64" in any_capsa("sif", "header", image).stdout
    info = any_capsa("sif", "info", "2", image).stdout
    assert "  Name:         meta.json\n" in info
    assert any_capsa("sif", "del", "2", image).returncode == 0
    assert len(any_capsa("sif", "list", image).stdout.splitlines()) == 4
    dump = any_capsa("sif", "dump", "1", image)
    assert dump.stdout.encode() == payload.read_bytes()


def test_new_writes_no_launch_script(capsa: Capsa, tmp_path: Path) -> None:
    image = tmp_path / "a.sif"
    assert capsa("sif", "new", str(image)).returncode == 0
    data = image.read_bytes()
    assert len(data) == 32176 and data[:32] == bytes(32) and data[32:42] == b"SIF_MAGIC\0"


@pytest.mark.parametrize("args, message", [
    (["add", "{img}", "{obj}"], "--datatype flag is required"),
    (["add", "{img}", "{obj}", "--datatype", "12"], "--datatype flag is required"),
    (["add", "{img}", "{obj}", "--datatype", "4", "--partfs", "1"], "--partfs, --parttype"),
    (["add", "{img}", "{obj}", "--datatype", "4", "--partfs", "1", "--parttype", "1",
      "--partarch", "13"], "unknown architecture"),
    (["add", "{img}", "{obj}", "--datatype", "5", "--signhash", "1", "--signentity", "zz"],
     "fingerprint"),
    (["add", "{img}", "{obj}", "--datatype", "5", "--signhash", "1", "--signentity", "abcd"],
     "fingerprint length"),
    (["add", "{img}", "{obj}", "--datatype", "5", "--signhash", "9", "--signentity", "00" * 20],
     "invalid hash type"),
    (["add", "{img}", "{obj}", "--datatype", "9"], "--sbomformat"),
    (["add", "{img}", "{obj}", "--datatype", "9", "--sbomformat", "x"], "invalid SBOM format"),
    (["add", "{img}", "{obj}", "--datatype", "6", "--link", "0"], "invalid object ID"),
    (["add", "{img}", "{obj}", "--datatype", "6", "--groupid", "-1"], "invalid"),
    (["add", "{img}", "/nonexistent", "--datatype", "6"], "does not exist"),
    (["add", "{img}", "{obj}", "--datatype", "6", "--filename", "n" * 129], "name too long"),
    (["del", "7", "{img}"], "not found"),
    (["del", "x", "{img}"], "invalid"),
    (["info", "0", "{img}"], "invalid object ID"),
    (["setprim", "1", "{img}"], "not a partition"),
    (["dump", "2", "{img}"], "not found"),
    (["list", "/nonexistent.sif"], "does not exist"),
    (["new", "/nonexistent/dir/a.sif"], "does not exist"),
])
def test_bad_input_is_one_fatal_line(capsa: Capsa, tmp_path: Path, args: list[str],
                                     message: str) -> None:
    image = tmp_path / "a.sif"
    obj = tmp_path / "obj"
    obj.write_bytes(b"{}")
    assert capsa("sif", "new", str(image)).returncode == 0
    assert capsa("sif", "add", str(image), str(obj), "--datatype", "6").returncode == 0
    before = image.read_bytes()
    argv = [a.format(img=image, obj=obj) for a in args]
    result = capsa("sif", *argv)
    assert result.returncode == 255, result
    assert result.stderr.startswith("FATAL:   ") and result.stderr.count("\n") == 1, result
    assert message in result.stderr, result
    assert result.stdout == ""
    assert image.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sif", "obj"]


def test_help_lists_the_subcommands(capsa: Capsa) -> None:
    result = capsa("sif", "--help")
    assert result.returncode == 0
    for name in ("new", "add", "del", "list", "info", "dump", "header", "setprim"):
        assert name in result.stdout
    assert "--signentity" in capsa("sif", "add", "--help").stdout


def test_a_user_reads_but_cannot_edit_a_root_image(capsa: Capsa, capsa_user: Capsa,
                                                   scratch: Path) -> None:
    image = scratch / "root.sif"
    obj = scratch / "obj"
    obj.write_bytes(b"x")
    os.chmod(obj, 0o644)
    assert capsa("sif", "new", str(image)).returncode == 0
    assert capsa("sif", "add", str(image), str(obj), "--datatype", "7").returncode == 0
    os.chmod(image, 0o644)
    before = image.read_bytes()
    assert capsa_user("sif", "list", str(image)).returncode == 0
    assert capsa_user("sif", "dump", "1", str(image)).stdout == "x"
    for argv in (["add", str(image), str(obj), "--datatype", "7"], ["del", "1", str(image)]):
        result = capsa_user("sif", *argv)
        assert result.returncode == 255, result
        assert result.stderr == f"FATAL:   could not open image {image}: permission denied\n"
    assert image.read_bytes() == before
    os.chmod(scratch, 0o755)  # the user may not create files here any more
    result = capsa_user("sif", "new", str(scratch / "user.sif"))
    assert result.returncode == 255 and "permission denied" in result.stderr.lower(), result
    os.chmod(scratch, 0o1777)


@pytest.mark.needs_shared
def test_siftool_is_an_alias_of_sif(capsa: Capsa) -> None:
    image = str(IMAGES / "two-groups.sif")
    assert capsa("siftool", "list", image).stdout == capsa("sif", "list", image).stdout != ""


def test_oci_blobs_get_their_sha256_digest(capsa: Capsa, tmp_path: Path) -> None:
    import hashlib

    image, blob = tmp_path / "a.sif", tmp_path / "blob"
    blob.write_bytes(b'{"schemaVersion": 2}')
    assert capsa("sif", "new", str(image)).returncode == 0
    for datatype in ("10", "11"):
        result = capsa("sif", "add", str(image), str(blob), "--datatype", datatype)
        assert result.returncode == 0, result
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    listing = capsa("sif", "list", str(image)).stdout.splitlines()
    assert listing[3].endswith("|OCI.RootIndex") and listing[4].endswith("|OCI.Blob")
    assert capsa("sif", "info", "2", str(image)).stdout.endswith(f"  Digest:       {digest}\n")
