"""Hostile images: a SIF whose partition points outside the file, and
symbolic links that try to lead binds out of the container root."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns

_DESCRIPTOR = struct.Struct("<iBIIIqqqqqqq128s384s")


def _corrupt_partition(sif: Path, out: Path) -> Path:
    """A copy of *sif* whose partition claims to run past the end of the file."""
    data = bytearray(sif.read_bytes())
    table = struct.unpack_from("<8q", data, 64)[4]
    for index in range(48):
        at = table + index * _DESCRIPTOR.size
        fields = list(_DESCRIPTOR.unpack_from(data, at))
        if fields[1] and fields[0] == 0x4004:
            fields[6] = len(data) * 4  # size
            fields[7] = len(data) * 4  # stored size
            _DESCRIPTOR.pack_into(data, at, *fields)
    out.write_bytes(bytes(data))
    out.chmod(0o644)
    return out


def test_partition_beyond_the_file(any_capsa: Capsa, images: dict[str, Path],
                                   scratch: Path) -> None:
    bad = _corrupt_partition(images["sif"], scratch / "bad.sif")
    result = any_capsa("exec", str(bad), "true", env={"TMPDIR": str(scratch)})
    assert result.returncode == 255, result
    assert result.stderr.startswith("FATAL:   could not open image")
    assert len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in scratch.iterdir()) == ["bad.sif"]


def test_symlinks_cannot_lead_binds_out(any_capsa: Capsa, images: dict[str, Path],
                                        scratch: Path) -> None:
    sandbox = scratch / "sandbox"
    shutil.copytree(images["sandbox"], sandbox, symlinks=True)
    # a host path outside every default bind (binds into /tmp, $HOME... are
    # legitimately the host's: the user can write there anyway)
    outside = Path("/opt") / f"capsa-escape-{scratch.name}"
    os.symlink(f"/../../../..{outside}", sandbox / "escape")
    source = scratch / "src"
    source.mkdir()
    (source / "f").write_text("bound\n")
    result = any_capsa("exec", "-B", f"{source}:/escape", str(sandbox), "cat", "/escape/f")
    assert (result.returncode, result.stdout) == (0, "bound\n"), result
    # the mount point was made inside the container's tree, never on the host
    escaped = outside.exists()
    if escaped:
        shutil.rmtree(outside)
    assert not escaped
