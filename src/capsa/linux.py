"""The one choke point for Linux system calls that Python's ``os`` lacks.

Namespaces, id maps, mounts, ``pivot_root``, ``prctl`` and loop devices go
through here (ctypes over libc), so the rest of capsa never touches ctypes
and tests can reason about one small surface.  Every failure raises
:class:`OSError` with the real errno; callers turn it into a capsa error.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217,
                   "riscv64": 41}

# statvfs f_flag bits -> the mount flags a bind remount must keep (the
# kernel refuses to drop locked nosuid/nodev/noexec/atime flags in a userns).
_KEEP_FLAGS = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC),
               (1024, MS_NOATIME), (2048, MS_NODIRATIME), (4096, MS_RELATIME))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong)
_libc.syscall.restype = ctypes.c_long
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_void_p)

TMPFS_MAGIC = 0x01021994


def _check(result: int, what: str, path: str | None = None) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace open at *fd* (``/proc/PID/ns/...``)."""
    _check(_libc.setns(fd, nstype), "setns")


_NAMESPACE_FILES = {CLONE_NEWUSER: "user", CLONE_NEWIPC: "ipc", CLONE_NEWUTS: "uts",
                    CLONE_NEWNET: "net", CLONE_NEWPID: "pid", CLONE_NEWNS: "mnt"}


def foreign_namespaces(pid: int, kinds: tuple[int, ...]) -> list[tuple[int, int]]:
    """(descriptor, kind) of each namespace of *pid* among *kinds*, in that
    order, that is not this process's own already (``setns`` into one's own
    namespace fails for the user namespace).  On ``OSError`` whatever was
    opened is closed again before it propagates."""
    fds: list[tuple[int, int]] = []
    try:
        for kind in kinds:
            name = _NAMESPACE_FILES[kind]
            theirs = f"/proc/{pid}/ns/{name}"
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            fds.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), kind))
    except OSError:
        for fd, _kind in fds:
            os.close(fd)
        raise
    return fds


_NS_GET_OWNER_UID = 0xB704  # _IO(0xb7, 0x4), linux/nsfs.h


def namespace_owner(fd: int) -> int:
    """The uid that created the user namespace open at *fd*, as this
    process's namespace sees it."""
    raw = fcntl.ioctl(fd, _NS_GET_OWNER_UID, bytes(4))
    return int(struct.unpack("=I", raw)[0])


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {source or fstype} on {target}", target)


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}", target)


def bind(source: str, target: str, *, recursive: bool = True, readonly: bool = False,
         extra: int = MS_NOSUID) -> None:
    """Bind *source* on *target*, then remount it with *extra* (and ro)."""
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    wanted = extra | (MS_RDONLY if readonly else 0)
    if wanted:
        remount(target, wanted)


def remount(target: str, flags: int) -> None:
    """Add *flags* to the bind mount at *target*, keeping its locked flags."""
    current = os.statvfs(target).f_flag
    keep = 0
    for bit, flag in _KEEP_FLAGS:
        if current & bit:
            keep |= flag
    mount(None, target, None, MS_REMOUNT | MS_BIND | keep | flags)


def make_private(path: str = "/") -> None:
    mount(None, path, None, MS_REC | MS_PRIVATE)


def pivot_root(new_root: str) -> None:
    """Make *new_root* the root of this mount namespace and drop the old one."""
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, "pivot_root: unsupported architecture")
    os.chdir(new_root)
    _check(_libc.syscall(number, b".", b"."), "pivot_root", new_root)
    umount(".", MNT_DETACH)
    os.chdir("/")


def filesystem_type(path: str) -> int:
    """The ``f_type`` magic number of the filesystem holding *path* (statfs;
    ``os.statvfs`` leaves it out)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit
    _check(_libc.statfs(_b(path), buf), "statfs", path)
    # f_type comes first: a long, except on s390x where it is an unsigned int.
    fmt = "=I" if os.uname().machine == "s390x" else "l"
    return int(struct.unpack_from(fmt, buf.raw)[0])


def set_no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def set_parent_death_signal(signum: int) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PDEATHSIG)")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def loopback_up() -> None:
    """Bring ``lo`` up in a fresh network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    import socket  # only with --net

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock.fileno(), 0x8913, request))[1]
        fcntl.ioctl(sock.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 1))


def write_id_maps(pid: int | str, uid_inside: int, uid_outside: int,
                  gid_inside: int, gid_outside: int) -> None:
    """Map one uid and one gid into the user namespace of *pid*."""
    base = f"/proc/{pid}"
    _write(f"{base}/setgroups", "deny")
    _write(f"{base}/uid_map", f"{uid_inside} {uid_outside} 1\n")
    _write(f"{base}/gid_map", f"{gid_inside} {gid_outside} 1\n")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# Loop devices (root only): LOOP_CONFIGURE with autoclear, so the device is
# released by the kernel as soon as the last mount of it goes away, even if
# capsa is killed.
_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_READ_ONLY = 1
_LO_FLAGS_AUTOCLEAR = 4


def attach_loop(backing_fd: int, offset: int, size: int) -> tuple[str, int]:
    """A read-only, autoclearing loop device over a byte range: (path, fd)."""
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(20):
            number = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
            path = f"/dev/loop{number}"
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, _LOOP_CONFIGURE, _loop_config(backing_fd, offset, size))
            except OSError as err:
                os.close(fd)
                if err.errno == 16:  # EBUSY: another process took it first
                    continue
                raise
            return path, fd
    finally:
        os.close(ctl)
    raise OSError(16, "no free loop device")


def _loop_config(backing_fd: int, offset: int, size: int) -> bytes:
    # struct loop_config { u32 fd; u32 block_size; struct loop_info64 info;
    #                      u64 reserved[8]; }
    info = struct.pack(
        "=QQQQQIIII64s64s32sQQ",
        0, 0, 0, offset, size, 0, 0, 0,
        _LO_FLAGS_READ_ONLY | _LO_FLAGS_AUTOCLEAR, b"", b"", b"", 0, 0,
    )
    return struct.pack("=II", backing_fd, 0) + info + bytes(64)
