"""Test images: a busybox root filesystem, as a sandbox, a squashfs and a SIF.

Built from Debian's ``busybox-static`` (one static binary, so the image
needs no libraries), with the ``/.singularity.d`` layout Apptainer's build
writes.  Everything is world-readable so the unprivileged test user can
run it.  Build once per session (see ``tests/runtime/conftest.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
RUNSCRIPT = '#!/bin/sh\necho "runscript args: $*"\n'
TEST_SCRIPT = '#!/bin/sh\necho "test passed"\n'
HELP = "This is the busybox test image.\n"
APP_HELP = "The hello app.\n"
DEFFILE = "Bootstrap: scratch\n\n%runscript\n    echo \"runscript args: $*\"\n"
LABELS = {"org.label-schema.schema-version": "1.0", "maintainer": "capsa tests"}
ENV_SCRIPT = 'export FROM_IMAGE="image value"\nexport IMAGE_PATH_SEEN="$PATH"\n'
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.split() if name and name != "busybox"]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def make_rootfs(dest: Path, *, shell: bool = True) -> Path:
    """A busybox tree at *dest*; without *shell*, no /bin/sh (nor any applet
    link but ``true``, ``env``, ``pwd``, ``cat``, ``id``)."""
    for name in ("bin", "etc", "dev", "proc", "sys", "tmp", "var/tmp", "home", "root",
                 ".singularity.d/env", ".singularity.d/actions", ".singularity.d/libs"):
        (dest / name).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    (dest / "var/tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    (dest / "bin/busybox").chmod(0o755)
    names = _applets() if shell else ["true", "false", "env", "pwd", "cat", "id", "echo"]
    for name in names:
        link = dest / "bin" / name
        if not link.exists():
            link.symlink_to("busybox")
    _write(dest / "etc/passwd", PASSWD)
    _write(dest / "etc/group", GROUP)
    _write(dest / "etc/hosts", "")
    _write(dest / "etc/resolv.conf", "")
    meta = dest / ".singularity.d"
    _write(meta / "env/01-base.sh", "#!/bin/sh\n# base\n", 0o755)
    _write(meta / "env/90-environment.sh", "#!/bin/sh\n" + ENV_SCRIPT, 0o755)
    _write(meta / "runscript", RUNSCRIPT, 0o755)
    _write(meta / "test", TEST_SCRIPT, 0o755)
    _write(meta / "runscript.help", HELP)
    _write(meta / "Singularity", DEFFILE)
    _write(meta / "labels.json", json.dumps(LABELS, indent=4))
    app = dest / "scif/apps/hello/scif"
    _write(app / "runscript", '#!/bin/sh\necho "hello app: $*"\n', 0o755)
    _write(app / "runscript.help", APP_HELP)
    _write(app / "labels.json", json.dumps({"app": "hello"}))
    _write(app / "env/90-environment.sh", "export HELLO_APP=yes\n", 0o755)
    return dest


def make_squashfs(rootfs: Path, dest: Path) -> Path:
    subprocess.run(["mksquashfs", str(rootfs), str(dest), "-noappend", "-all-root",
                    "-comp", "gzip", "-quiet", "-no-progress"],
                   check=True, capture_output=True)
    dest.chmod(0o644)
    return dest


LAUNCH_LINE = b"#!/usr/bin/env run-singularity\n"


def make_legacy(filesystem: Path, dest: Path) -> Path:
    """A Singularity 2.x image: the launch line, then *filesystem* (a
    squashfs or an ext3 image), executable as the old images were."""
    dest.write_bytes(LAUNCH_LINE + filesystem.read_bytes())
    dest.chmod(0o755)
    return dest


def make_ext3(rootfs: Path, dest: Path, size: str = "16M") -> Path:
    """An ext3 filesystem image of *rootfs*, made by e2fsprogs (``mkfs.ext3 -d``)."""
    subprocess.run(["mkfs.ext3", "-q", "-F", "-d", str(rootfs), str(dest), size],
                   check=True, capture_output=True)
    dest.chmod(0o644)
    return dest


def make_sif(squashfs: Path, dest: Path, *, arch: str | None = None,
             with_partition: bool = True) -> Path:
    from capsa import sif
    from capsa.sif import format as sif_format

    objects = [sif.NewObject(sif_format.DataType.DEFFILE, data=DEFFILE.encode()),
               sif.NewObject(sif_format.DataType.LABELS, data=json.dumps(LABELS).encode())]
    if with_partition:
        code = sif_format.sif_arch(arch or sif_format.host_goarch())
        objects.append(sif.NewObject(
            sif_format.DataType.PARTITION, path=str(squashfs),
            fs_type=sif_format.FSType.SQUASHFS, part_type=sif_format.PartType.PRIMSYS,
            arch=code))
    sif.create(dest, objects)
    dest.chmod(0o755)
    return dest


def build_all(base: Path) -> dict[str, Path]:
    """Every test image under *base* (made once; reused when present)."""
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    done = base / ".complete"
    paths = {
        "sandbox": base / "busybox",
        "squashfs": base / "busybox.sqfs",
        "sif": base / "busybox.sif",
        "noshell_sif": base / "noshell.sif",
        "other_arch_sif": base / "other-arch.sif",
        "nopart_sif": base / "no-partition.sif",
    }
    if done.exists():
        return paths
    for leftover in base.iterdir():
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    make_rootfs(paths["sandbox"])
    make_squashfs(paths["sandbox"], paths["squashfs"])
    make_sif(paths["squashfs"], paths["sif"])
    noshell = make_rootfs(base / "noshell-root", shell=False)
    make_sif(make_squashfs(noshell, base / "noshell.sqfs"), paths["noshell_sif"])
    other = "arm64" if os.uname().machine == "x86_64" else "amd64"
    make_sif(paths["squashfs"], paths["other_arch_sif"], arch=other)
    make_sif(paths["squashfs"], paths["nopart_sif"], with_partition=False)
    for root, dirs, files in os.walk(base):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
    done.touch()
    return paths
