"""A build running out of space for real (a small tmpfs as its temporary
directory, or as the sandbox's parent): unpacking the base, ``%post``, the
squashfs.  One FATAL naming the directory and the variable to set, nothing
left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa, Result
from support.tmpfs import leftovers, small_tmpfs

from .conftest import BuildImages

pytestmark = pytest.mark.needs_userns


def _fatal(result: Result) -> str:
    assert result.returncode == 255, result
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL:")]
    assert len(fatal) == 1 and "Traceback" not in result.stderr, result
    return fatal[0]


def _definition(scratch: Path, base: Path, post: str) -> Path:
    path = scratch / "full.def"
    path.write_text(f"Bootstrap: localimage\nFrom: {base}\n\n%post\n    {post}\n")
    path.chmod(0o644)
    return path


# (tmpfs size, %post): the busybox base is about 2.3 MB unpacked.
CASES = {
    "unpack": ("1m", "true"),
    "post": ("8m", "dd if=/dev/zero of=/fill bs=1M count=32"),
    # as a package manager backing out: the space is free again at the end
    "post-freed": ("8m", "dd if=/dev/zero of=/fill bs=1M count=32; sleep 0.5; rm /fill; exit 1"),
    "squashfs": ("10m", "head -c 6000000 /dev/urandom > /noise"),
}


@pytest.mark.parametrize("step", sorted(CASES))
def test_tmpdir_full(any_capsa: Capsa, build_images: BuildImages, scratch: Path,
                     step: str) -> None:
    size, post = CASES[step]
    definition = _definition(scratch, build_images.sif, post)
    with small_tmpfs(size) as small:
        env = {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(small)}
        result = any_capsa("build", "out.sif", str(definition), cwd=scratch, env=env)
        line = _fatal(result)
        assert f"no space left on device in {small}: set APPTAINER_TMPDIR" in line, result
        assert leftovers(small) == []
    assert not (scratch / "out.sif").exists()


def test_sandbox_parent_full(any_capsa: Capsa, build_images: BuildImages,
                             scratch: Path) -> None:
    definition = _definition(scratch, build_images.sif, "true")
    with small_tmpfs("1m") as small:
        env = {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(scratch)}
        result = any_capsa("build", "--sandbox", str(small / "box"), str(definition),
                           cwd=scratch, env=env)
        line = _fatal(result)
        assert f"no space left on device in {small}" in line, result
        assert leftovers(small) == []
    assert sorted(p.name for p in scratch.iterdir()) == ["cache", "full.def"]
