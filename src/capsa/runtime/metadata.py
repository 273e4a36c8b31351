"""Reading an image's ``/.singularity.d`` (and SCIF apps) for ``inspect`` and
``run-help``.

A sandbox is read directly.  A squashfs is mounted in a short-lived child
(the same namespaces and mounts as a run: squashfuse rootless, a loop device
as root) which sends the small files back through a pipe; where neither
works, only the metadata directories are extracted with ``unsquashfs``.
"""

from __future__ import annotations

import marshal
import os
from typing import NamedTuple

from capsa import children, report, userns
from capsa.errors import ContainerError
from capsa.runtime.mounts import Session, resolve_in_root, session_tmpdir
from capsa.runtime.spec import ImageSpec

log = report.getLogger("capsa.runtime.metadata")

_MAX_FILE = 1 << 20
_MAX_FILES = 512
_TOP = "/.singularity.d"
_FILES = ("labels.json", "Singularity", "Apptainer", "runscript", "startscript", "test",
          "runscript.help")


def read_metadata(image: ImageSpec, *, mount: bool = True) -> dict[str, bytes]:
    """Container path -> content, for the metadata files that exist; the
    image is extracted rather than mounted when *mount* is false (the
    site's settings) or when it cannot be."""
    if image.kind == "dir":
        return collect(image.path)
    from capsa.runtime.launcher import fuse_usable

    rootless = not _host_root()
    if image.kind == "ext3":
        if rootless or not mount or not os.path.exists("/dev/loop-control"):
            from capsa.runtime.image import ext3_unmountable

            raise ext3_unmountable(image.path)
        return _read_mounted(image, rootless)
    mountable = (rootless and fuse_usable()) or (
        not rootless and os.path.exists("/dev/loop-control"))
    if mount and mountable:
        return _read_mounted(image, rootless)
    return _read_extracted(image)


def collect(root: str) -> dict[str, bytes]:
    """The metadata files under *root* (a mounted or unpacked image)."""
    found: dict[str, bytes] = {}
    prefixes = [_TOP]
    try:
        apps = sorted(os.listdir(root + resolve_in_root(root, "/scif/apps")))
    except OSError:
        apps = []
    prefixes += [f"/scif/apps/{app}/scif" for app in apps]
    for prefix in prefixes:
        for name in _FILES:
            _read_into(found, root, f"{prefix}/{name}")
        try:
            env_dir = root + resolve_in_root(root, f"{prefix}/env")
            names = sorted(os.listdir(env_dir))
        except OSError:
            continue
        for name in names[:_MAX_FILES]:
            _read_into(found, root, f"{prefix}/env/{name}")
    return found


def _read_into(found: dict[str, bytes], root: str, path: str) -> None:
    host = root + resolve_in_root(root, path)
    try:
        if not os.path.isfile(host):
            return
        with open(host, "rb") as handle:
            found[path] = handle.read(_MAX_FILE)
    except OSError:
        return


def _read_mounted(image: ImageSpec, rootless: bool) -> dict[str, bytes]:
    """Mount the image in a child (its namespaces go with it) that sends
    the metadata files back through a pipe."""
    read_end, write_end = os.pipe()

    def collect_and_send() -> int:
        os.close(read_end)
        try:
            data = _mount_and_collect(image, rootless)
        except Exception:
            return 1
        with os.fdopen(write_end, "wb") as out:
            out.write(marshal.dumps(data))
        return 0

    child = children.fork(collect_and_send)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream:
        payload = stream.read()
    if child.wait() != 0 or not payload:
        raise ContainerError(f"could not inspect container: failed to mount {image.path}")
    loaded = marshal.loads(payload)
    return {str(k): bytes(v) for k, v in loaded.items()}


def _mount_and_collect(image: ImageSpec, rootless: bool) -> dict[str, bytes]:
    from capsa import linux

    session = Session(session_tmpdir(), rootless=rootless)
    try:
        if os.geteuid() != 0:
            userns.enter(userns.own_map(os.geteuid(), os.getegid()), linux.CLONE_NEWNS)
        else:  # real root, or root of a user namespace already
            linux.unshare(linux.CLONE_NEWNS)
        linux.make_private("/")
        session.mount_tmpfs()
        if rootless:
            lower = session.mount_squashfuse(image, os.geteuid(), os.getegid())
        else:
            lower = session.mount_squashfs_loop(image)
        return collect(lower)
    finally:
        session.close()


def _host_root() -> bool:
    return os.geteuid() == 0 and userns.in_initial_namespace()


def _read_extracted(image: ImageSpec) -> dict[str, bytes]:
    session = Session(session_tmpdir(), rootless=not _host_root())
    try:
        from capsa.programs import require

        argv = [require("unsquashfs"), "-n", "-q", "-no-xattrs"]
        root = session.extract(image, argv, subset=(".singularity.d", "scif"), quiet=True)
        return collect(root)
    finally:
        session.close()


# -- what ``inspect`` shows ------------------------------------------------------------

class ImageMetadata(NamedTuple):
    """What ``capsa inspect --all`` shows of an image."""

    labels: dict[str, str]
    deffile: str
    runscript: str
    startscript: str
    test: str
    helpfile: str
    environment: dict[str, str]   # path inside -> content of each environment script
    apps: tuple[str, ...]


def image_metadata(image: ImageSpec, *, mount: bool = True) -> ImageMetadata:
    """``inspect --all``'s view of *image*."""
    files = read_metadata(image, mount=mount)
    top = "/.singularity.d"
    text = {name: _text(files.get(f"{top}/{name}", b"")) for name in
            ("runscript", "startscript", "test", "runscript.help")}
    deffile = sif_deffile(image.path, image.fd) if image.kind == "squashfs" else None
    if deffile is None:
        raw = files.get(f"{top}/Singularity", files.get(f"{top}/Apptainer"))
        deffile = raw.decode("utf-8", errors="replace") if raw is not None else ""
    return ImageMetadata(
        labels=labels_of(files.get(f"{top}/labels.json")), deffile=deffile.rstrip("\n"),
        runscript=text["runscript"], startscript=text["startscript"], test=text["test"],
        helpfile=text["runscript.help"],
        environment={path: _text(raw) for path, raw in sorted(files.items())
                     if path.startswith(f"{top}/env/") and is_env_file(path, top)},
        apps=tuple(app_names(files)))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\n")


def labels_of(raw: bytes | None) -> dict[str, str]:
    """An image's ``labels.json`` (values that are not strings as JSON);
    {} when missing or unreadable (with a warning)."""
    if raw is None:
        return {}
    import json

    from capsa.errors import FormatError
    from capsa.jsondoc import load

    try:
        loaded = load(raw, "labels")
    except FormatError as err:
        log.warning("Unable to parse labels: %s", err)
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()}


def sif_deffile(path: str, fd: int) -> str | None:
    """The definition file object of a SIF (read through *fd*), if any."""
    from capsa.errors import CapsaError
    from capsa.sif.format import DataType
    from capsa.sif.image import SifImage

    try:
        with SifImage.from_fd(fd, path) as sif:
            found = sif.select(data_type=DataType.DEFFILE)
            return sif.read(found[0]).decode("utf-8", errors="replace") if found else None
    except CapsaError:
        return None


def app_names(files: dict[str, bytes]) -> list[str]:
    return sorted({p.split("/")[3] for p in files if p.startswith("/scif/apps/")})


def is_env_file(path: str, prefix: str) -> bool:
    """An environment script ``inspect -e`` shows: Docker's and ``%environment``'s."""
    name = path[len(prefix) + 5:]
    return name.startswith("10-docker") or (name.startswith("9") and
                                             name.endswith("-environment.sh"))
