"""Assembling the container's filesystem tree inside a private mount namespace.

:class:`Session` owns one session directory (a tmpfs) holding the image
mount (``lower``), the overlay pieces (``upper``, ``work``), the final root
(``root``) and generated files; it also owns the squashfuse process and any
extracted sandbox, and :meth:`Session.close` removes all of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from capsa import children, linux, report, tempdirs
from capsa.errors import ContainerError
from capsa.programs import require
from capsa.runtime.spec import ImageSpec, OverlaySpec

log = report.getLogger("capsa.runtime.mounts")

_SESSION_SIZE = "64m"
_SESSION_PREFIXES = ("capsa-session-", "capsa-sandbox-")
_MAX_LINKS = 40


def resolve_in_root(root: str, path: str) -> str:
    """*path* inside *root* with symlinks followed as if *root* were ``/``.

    The result is the container-side path (starting with ``/``); no link in
    a hostile image can lead out of *root*.  Missing components are kept.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root + "/" + "/".join([*done, part])
        try:
            target = os.readlink(candidate)
        except OSError:
            done.append(part)
            continue
        hops += 1
        if hops > _MAX_LINKS:
            raise ContainerError(f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            done = []
        parts[:0] = [p for p in target.split("/") if p and p != "."]
    return "/" + "/".join(done)


def session_tmpdir() -> str:
    """Where a session keeps its scratch (:func:`capsa.scratch.scratch_dir`;
    a variable naming no directory is passed over)."""
    from capsa.userdirs import scratch

    return scratch(existing_only=True)


class Session:
    """The session directory and everything mounted or started for one run."""

    def __init__(self, tmpdir: str, *, rootless: bool) -> None:
        self.rootless = rootless
        # What runs of ours killed outright left here goes first; ours is
        # locked for as long as any process of this session lives.
        tempdirs.sweep(tmpdir, _SESSION_PREFIXES)
        self.path, self._lock = tempdirs.make_dir(tmpdir, "capsa-session-")
        self._sandbox_lock = -1
        self.tmpdir = tmpdir
        self.fuse: children.Child | None = None      # squashfuse_ll serving the image
        self.prefetcher: children.Child | None = None
        self.extracted: str | None = None
        self.mounted = False

    # -- layout ------------------------------------------------------------
    def sub(self, name: str) -> str:
        return f"{self.path}/{name}"

    def mount_tmpfs(self) -> None:
        linux.mount("tmpfs", self.path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV,
                    f"size={_SESSION_SIZE},mode=0755")
        self.mounted = True
        for name in ("lower", "upper", "work", "root", "files"):
            os.mkdir(self.sub(name), 0o755)

    # -- the image ---------------------------------------------------------
    def mount_squashfs_loop(self, image: ImageSpec) -> str:
        """The image's filesystem (squashfs, or a legacy image's ext3) on a
        read-only loop device (root only)."""
        with _image_fd(image) as fd:
            device, loop_fd = linux.attach_loop(fd, image.offset, image.size)
        try:
            linux.mount(device, self.sub("lower"), image.kind,
                        linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)
        finally:
            os.close(loop_fd)
        return self.sub("lower")

    def mount_squashfuse(self, image: ImageSpec, uid: int, gid: int, *,
                         allow_other: bool = False) -> str:
        """Mount ourselves with a /dev/fuse fd, then let squashfuse_ll serve it.

        *allow_other*: every user of our namespace may read it (a fakeroot
        namespace maps several, and package managers switch to them)."""
        program = require("squashfuse_ll")
        fuse_fd = os.open("/dev/fuse", os.O_RDWR)
        options = f"fd={fuse_fd},rootmode=40000,user_id={uid},group_id={gid}"
        if allow_other:
            options += ",allow_other"
        try:
            linux.mount("squashfuse_ll", self.sub("lower"), "fuse.squashfuse_ll",
                        linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV, options)
            with _image_fd(image) as image_fd:
                # squashfuse reads the very file we opened (and verified), not
                # whatever the image's name points to by now.
                argv = [program, "-f", "-o", f"offset={image.offset}", f"/dev/fd/{image_fd}",
                        f"/dev/fd/{fuse_fd}"]
                self.fuse = children.spawn(argv, keep_fds=(fuse_fd, image_fd))
        finally:
            os.close(fuse_fd)
        try:
            os.stat(self.sub("lower") + "/.")
        except OSError as err:
            raise ContainerError(f"failed to mount squashfs image {image.path}: "
                                 f"{err.strerror}") from err
        return self.sub("lower")

    def extract(self, image: ImageSpec, runner_argv: list[str] | None = None, *,
                subset: tuple[str, ...] = (), quiet: bool = False) -> str:
        """Unpack the squashfs (or only *subset* of it) to a temporary sandbox."""
        from capsa.proc import DEFAULT_RUNNER

        if not quiet:
            log.info("Converting SIF file to temporary sandbox...")
        self.extracted, self._sandbox_lock = tempdirs.make_dir(self.tmpdir, "capsa-sandbox-")
        # A private copy of the partition, from the descriptor: unsquashfs
        # must unpack what was opened (and verified), not what the name is now.
        source = self.extracted + "/image.sqfs"
        with _image_fd(image) as fd:
            _copy_range(fd, image.path, source, image.offset, image.size)
        dest = self.extracted + "/root"
        argv = runner_argv or [require("unsquashfs"), "-n", "-q", "-no-xattrs"]
        try:
            DEFAULT_RUNNER.run([*argv, "-d", dest, source, *subset])
        finally:
            os.unlink(source)
        return dest

    def mount_overlay(self, lower: str, overlays: tuple[OverlaySpec, ...],
                      writable_overlay: OverlaySpec | None) -> str:
        lowers = [_escape(_overlay_lower(o.path)) for o in reversed(overlays)
                  if o is not writable_overlay]
        lowers.append(_escape(lower))
        if writable_overlay is not None:
            upper = writable_overlay.path + "/upper"
            work = writable_overlay.path + "/work"
            os.makedirs(upper, exist_ok=True)
            os.makedirs(work, exist_ok=True)
        else:
            upper, work = self.sub("upper"), self.sub("work")
        data = f"lowerdir={':'.join(lowers)},upperdir={_escape(upper)},workdir={_escape(work)}"
        if self.rootless:
            data += ",userxattr"
        target = self.sub("root")
        try:
            linux.mount("overlay", target, "overlay", linux.MS_NOSUID | linux.MS_NODEV, data)
        except OSError as err:
            raise ContainerError(f"failed to mount overlay: {err.strerror}") from err
        return target

    def bind_root(self, directory: str, *, readonly: bool) -> str:
        target = self.sub("root")
        linux.bind(directory, target, readonly=readonly, extra=linux.MS_NOSUID | linux.MS_NODEV)
        return target

    def prefetch(self, lower: str, paths: list[str]) -> None:
        """Read the programs the container will start first, in a child
        process, while the rest of the container is set up.

        A program's first exec from a squashfs page-faults its file in small,
        scattered reads, each one decompressing a whole block (busybox: ~20 ms
        through FUSE); one sequential read started early puts it in the page
        cache that the exec then finds (~6 ms).  Best effort: errors are
        ignored, and the child dies with us."""
        files = []
        for path in paths:
            inside = resolve_in_root(lower, path)
            if inside not in files and os.path.isfile(lower + inside):
                files.append(inside)
        if not files:
            return
        def read() -> int:
            for inside in files:
                _read_through(lower + inside)
            return 0

        self.prefetcher = children.fork(read)

    # -- teardown ----------------------------------------------------------
    def close(self) -> None:
        """Unmount, stop squashfuse, remove what we created; never raises."""
        # SIGKILL: they only read a read-only image nothing uses any more (and
        # squashfuse would try a slow unmount through fusermount3, which
        # cannot work in a user namespace).
        if self.prefetcher is not None:
            self.prefetcher.stop()
            self.prefetcher = None
        if self.mounted:
            _quietly(linux.umount, self.path, linux.MNT_DETACH)
            self.mounted = False
        if self.fuse is not None:
            self.fuse.stop()
            self.fuse = None
        _quietly(os.rmdir, self.path)
        if self.extracted:
            tempdirs.remove_tree(self.extracted)
            self.extracted = None
        for fd in (self._lock, self._sandbox_lock):
            if fd >= 0:
                _quietly(os.close, fd)
        self._lock = self._sandbox_lock = -1


def _overlay_lower(path: str) -> str:
    """A read-only overlay directory: its ``upper`` when it was used writable."""
    upper = path + "/upper"
    return upper if os.path.isdir(upper) and os.path.isdir(path + "/work") else path


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


_PREFETCH_LIMIT = 32 << 20  # a program's first pages, not a whole huge file


def _read_through(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        done = 0
        while done < _PREFETCH_LIMIT:
            chunk = len(os.read(fd, 1 << 20))
            if not chunk:
                break
            done += chunk
    except OSError:
        return
    finally:
        os.close(fd)


@contextlib.contextmanager
def _image_fd(image: ImageSpec) -> Iterator[int]:
    """The descriptor the image was opened (and verified) as; one opened
    here only for an image that never went through :func:`image.resolve`."""
    if image.fd >= 0:
        yield image.fd
        return
    fd = os.open(image.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _copy_range(src: int, name: str, dest: str, offset: int, size: int) -> None:
    dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        done = 0
        while done < size:
            count = os.copy_file_range(src, dst, size - done, offset + done)
            if count == 0:
                raise ContainerError(f"{name}: partition extends beyond the end of the file")
            done += count
    finally:
        os.close(dst)


def _quietly(func: object, *args: object) -> None:
    try:
        func(*args)  # type: ignore[operator]
    except OSError as err:
        log.debug("cleanup: %s", err)
