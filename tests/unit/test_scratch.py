"""capsa.scratch: which directory, and running out of space in it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from capsa.errors import NoSpaceError, ToolError, UsageError
from capsa.scratch import Place, guard, is_full, scratch_dir, tmpdir_place
from support.tmpfs import small_tmpfs


@pytest.mark.parametrize(("env", "flag", "expected"), [
    ({"APPTAINER_TMPDIR": "/a", "SINGULARITY_TMPDIR": "/s", "TMPDIR": "/t"}, "/f", "/f"),
    ({"APPTAINER_TMPDIR": "/a", "SINGULARITY_TMPDIR": "/s", "TMPDIR": "/t"}, None, "/a"),
    ({"SINGULARITY_TMPDIR": "/s", "TMPDIR": "/t"}, None, "/s"),
    ({"APPTAINER_TMPDIR": "", "TMPDIR": "/t"}, None, "/t"),
])
def test_precedence(env: dict[str, str], flag: str | None, expected: str) -> None:
    assert scratch_dir(env, flag) == expected


def test_default_follows_what_tmp_is() -> None:
    from capsa import linux

    tmpfs = linux.filesystem_type("/tmp") == linux.TMPFS_MAGIC
    assert scratch_dir({}) == ("/var/tmp" if tmpfs else "/tmp")


def test_runtime_passes_over_missing_directories(tmp_path: Path) -> None:
    env = {"APPTAINER_TMPDIR": str(tmp_path / "missing"), "TMPDIR": str(tmp_path)}
    assert scratch_dir(env, existing_only=True) == str(tmp_path)
    assert scratch_dir(env) == str(tmp_path / "missing")


def test_guard_names_the_place() -> None:
    place = tmpdir_place("/scratch")
    with pytest.raises(NoSpaceError) as caught, guard(place):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(caught.value) == ("no space left on device in /scratch: set APPTAINER_TMPDIR "
                                 "(or --tmpdir) to a directory with more space")
    with pytest.raises(NoSpaceError, match=r"in /dest$"), guard(Place("/dest")):
        raise UsageError("could not write /dest/x.sif: No space left on device")


def test_guard_lets_other_failures_through() -> None:
    with pytest.raises(ToolError, match="boom"), guard(tmpdir_place("/"), check_full=True):
        raise ToolError("boom")
    inner = NoSpaceError("no space left on device in /inner")
    with pytest.raises(NoSpaceError) as caught, guard(tmpdir_place("/outer")):
        raise inner
    assert caught.value is inner


def test_a_failure_on_a_full_filesystem() -> None:
    with small_tmpfs("4m") as small:
        assert not is_full(small)
        with pytest.raises(OSError) as full, (small / "fill").open("wb") as out:
            out.write(b"\0" * (8 << 20))
        assert full.value.errno == errno.ENOSPC
        assert is_full(small)
        with pytest.raises(NoSpaceError, match=str(small)), guard(
                tmpdir_place(small), check_full=True):
            raise ToolError("%post failed: exit status 1")
        with pytest.raises(ToolError), guard(tmpdir_place(small)):
            raise ToolError("%post failed: exit status 1")  # without check_full
        (small / "fill").unlink()
        assert not is_full(small)
