"""User namespaces: who is who inside, and how a process gets there.

Three ways to run, as Apptainer does (``--fakeroot``, and every unprivileged
build of a definition file):

- **own**: the caller's uid and gid mapped to themselves, one id each (an
  ordinary rootless ``exec``).
- **subuid**: uid 0 inside is the caller, 1..N the caller's subordinate range
  from ``/etc/subuid`` and ``/etc/subgid``, written by the setuid helpers
  ``newuidmap``/``newgidmap``; package managers can drop privileges to their
  sandbox users and ``chown`` to any id in the range.
- **root-mapped**: uid 0 inside is the caller and nothing else is mapped (no
  subordinate range, or no helpers); changes of owner are then faked by the
  host's ``fakeroot(1)`` (see :class:`FakerootTool`).

This module is on the ``exec`` path: it imports nothing beyond ``os``.
"""

from __future__ import annotations

import os

from capsa import children, linux, programs, report
from capsa.record import Record

log = report.getLogger("capsa.userns")
# Where the id-map helpers and fakeroot(1) are looked up: the system's own
# directories, not whatever the caller's PATH says.
_SYSTEM_PATH = "/usr/bin:/usr/sbin:/bin:/sbin:/usr/local/bin"
SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"
# Apptainer's fakeroot range count (internal/pkg/fakeroot: validRangeCount).
RANGE_COUNT = 65536
_FULL_RANGE = 4294967295


class IdRange(Record):
    """``size`` ids from ``inside`` in the namespace, ``outside`` on the host."""

    inside: int
    outside: int
    size: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.size}"


class IdMap(Record):
    """The uid and gid maps of a user namespace, and where they came from."""

    kind: str                       # "own", "subuid" or "root-mapped"
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]

    @property
    def wide(self) -> bool:
        """More than one id mapped: chown and setgroups work for real."""
        return sum(r.size for r in self.uids) > 1

    @property
    def root_inside(self) -> bool:
        return any(r.inside == 0 for r in self.uids)

    def describe(self) -> str:
        def ranges(items: tuple[IdRange, ...]) -> str:
            return ", ".join(f"{r.inside}-{r.inside + r.size - 1}->{r.outside}"
                             f"-{r.outside + r.size - 1}" if r.size > 1
                             else f"{r.inside}->{r.outside}" for r in items)

        source = {"subuid": f" (from {SUBUID_FILE} and {SUBGID_FILE})",
                  "root-mapped": " (root-mapped: no subordinate ids)"}.get(self.kind, "")
        return f"user namespace uid map {ranges(self.uids)}, gid map {ranges(self.gids)}{source}"


class FakerootTool(Record):
    """The host's ``fakeroot(1)``: its script, daemon and preload library,
    the ``getopt`` the script needs, and the dynamic loader they need in a
    container (host binaries: they run only over a compatible C library)."""

    script: str
    faked: str
    library: str
    getopt: str = ""
    interpreter: str = ""


class Fakeroot(Record):
    """How ``--fakeroot`` runs here: the namespace to create (None when this
    process is already root of one) and fakeroot(1) where ids are faked."""

    idmap: IdMap | None
    tool: FakerootTool | None


def plan_fakeroot(*, ignore_subuid: bool = False, ignore_command: bool = False) -> Fakeroot:
    """Apptainer's order: the subordinate ranges; else a root-mapped
    namespace, with the host's fakeroot command where there is one.  Says
    which (INFO as Apptainer does, the maps in one verbose line)."""
    current = current_map() if os.geteuid() == 0 else None
    if os.geteuid() == 0 and current is None:
        return Fakeroot(None, None)  # real root: nothing to fake
    if current is not None:  # root of a namespace already (a build's %post)
        log.verbose("running in the %s", current.describe())
        if current.wide:
            return Fakeroot(None, None)
        return Fakeroot(None, _fakeroot_command(ignore_command))
    idmap = _caller_map(ignore_subuid)
    log.verbose("fakeroot: %s", idmap.describe())
    if idmap.wide:
        return Fakeroot(idmap, None)
    log.info("User not listed in %s, trying root-mapped namespace", SUBUID_FILE)
    return Fakeroot(idmap, _fakeroot_command(ignore_command))


def _caller_map(ignore_subuid: bool) -> IdMap:
    import grp
    import pwd

    uid, gid = os.getuid(), os.getgid()
    if ignore_subuid:
        return root_mapped(uid, gid)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return fakeroot_map(uid, gid, name, group)


def _fakeroot_command(ignore: bool) -> FakerootTool | None:
    tool = None if ignore else find_fakeroot()
    if tool is None:
        log.info("fakeroot command not found, using only root-mapped namespace")
    else:
        log.info("Using fakeroot command combined with root-mapped namespace")
    return tool


def own_map(uid: int, gid: int) -> IdMap:
    return IdMap("own", (IdRange(uid, uid, 1),), (IdRange(gid, gid, 1),))


def root_mapped(uid: int, gid: int) -> IdMap:
    return IdMap("root-mapped", (IdRange(0, uid, 1),), (IdRange(0, gid, 1),))


def subordinate_range(table: str, name: str, uid: int) -> IdRange | None:
    """The caller's first usable range in *table* (``name:start:count`` or
    ``uid:start:count`` lines), mapped from id 1 inside; at most
    :data:`RANGE_COUNT` ids of it, as Apptainer maps."""
    try:
        with open(table, encoding="utf-8", errors="replace") as handle:
            lines = handle.read(1 << 20).splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(uid)):
            continue
        if not (fields[1].isdigit() and fields[2].isdigit()):
            continue
        start, count = int(fields[1]), int(fields[2])
        if count > 0:
            return IdRange(1, start, min(count, RANGE_COUNT))
    return None


def fakeroot_map(uid: int, gid: int, name: str, group: str, *,
                 subuid_file: str = SUBUID_FILE, subgid_file: str = SUBGID_FILE,
                 helpers: bool | None = None) -> IdMap:
    """uid 0 inside for the caller: with the subordinate ranges when the
    caller has both and ``newuidmap``/``newgidmap`` exist, else root-mapped."""
    users = subordinate_range(subuid_file, name, uid)
    groups = subordinate_range(subgid_file, group, gid) or subordinate_range(
        subgid_file, name, uid)
    if helpers is None:
        helpers = all(programs.find(p, _SYSTEM_PATH) for p in ("newuidmap", "newgidmap"))
    if users is None or groups is None or not helpers:
        return root_mapped(uid, gid)
    return IdMap("subuid", (IdRange(0, uid, 1), users), (IdRange(0, gid, 1), groups))


def enter(idmap: IdMap, flags: int = 0) -> None:
    """``unshare`` a user namespace (plus *flags*) with *idmap* written.

    A single-id map is written by this process itself (``setgroups`` must
    then be denied); a wider one needs the setuid helpers, run by a child
    forked before the unshare, which stays in the host's namespace."""
    if not idmap.wide:
        linux.unshare(linux.CLONE_NEWUSER | flags)
        uid, gid = idmap.uids[0], idmap.gids[0]
        linux.write_id_maps("self", uid.inside, uid.outside, gid.inside, gid.outside)
        return
    go_read, go_write = os.pipe()
    parent = os.getpid()

    def write_maps() -> int:
        os.close(go_write)
        os.read(go_read, 1)  # the parent has unshared
        return _write_maps_with_helpers(parent, idmap)

    helper = children.fork(write_maps)
    os.close(go_read)
    try:
        linux.unshare(linux.CLONE_NEWUSER | flags)
    finally:
        os.write(go_write, b"x")
        os.close(go_write)
        status = helper.wait()
    if status != 0:
        raise OSError(1, "newuidmap/newgidmap could not write the id maps of the "
                      f"user namespace ({idmap.describe()})")


def _write_maps_with_helpers(pid: int, idmap: IdMap) -> int:
    for helper, ranges in (("newuidmap", idmap.uids), ("newgidmap", idmap.gids)):
        program = programs.find(helper, _SYSTEM_PATH)
        if program is None:
            return 127
        argv = [program, str(pid)]
        for item in ranges:
            argv += [str(item.inside), str(item.outside), str(item.size)]
        if children.spawn(argv, stdio=False).wait() != 0:
            return 1
    return 0


def in_initial_namespace() -> bool:
    """Is this process in the host's user namespace (the full identity map)?"""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as handle:
            text = handle.read(4096)
    except OSError:
        return True
    return text.split() == ["0", "0", str(_FULL_RANGE)]


def current_map() -> IdMap | None:
    """The map of the user namespace this process is in (None on the host)."""
    if in_initial_namespace():
        return None
    uids = _read_map("/proc/self/uid_map")
    gids = _read_map("/proc/self/gid_map")
    if not uids:
        return None
    kind = "root-mapped" if sum(r.size for r in uids) == 1 else "subuid"
    return IdMap(kind, uids, gids)


def _read_map(path: str) -> tuple[IdRange, ...]:
    try:
        with open(path, encoding="ascii") as handle:
            lines = handle.read(4096).splitlines()
    except OSError:
        return ()
    ranges = []
    for line in lines:
        words = line.split()
        if len(words) == 3 and all(w.isdigit() for w in words):
            ranges.append(IdRange(int(words[0]), int(words[1]), int(words[2])))
    return tuple(ranges)


def find_fakeroot() -> FakerootTool | None:
    """The host's fakeroot: ``fakeroot-sysv`` first (faster than the TCP
    flavour, as Apptainer prefers), then ``fakeroot``; its daemon and
    library as the script names them."""
    for name in ("fakeroot-sysv", "fakeroot"):
        script = programs.find(name, _SYSTEM_PATH)
        if script is None:
            continue
        found = _fakeroot_parts(os.path.realpath(script))
        if found is not None:
            return found
    return None


def _fakeroot_parts(script: str) -> FakerootTool | None:
    """Read ``FAKED=``, ``FAKEROOT_LIB=`` and ``PATHS=`` from the script
    (Debian's and upstream's ``fakeroot`` are shell scripts naming them)."""
    try:
        with open(script, encoding="utf-8", errors="replace") as handle:
            text = handle.read(64 << 10)
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name in ("FAKED", "FAKEROOT_LIB", "PATHS", "FAKEROOT_PREFIX",
                            "FAKEROOT_BINDIR") and name not in values:
            value = value.strip().strip("'\"")
            for known, text_value in values.items():  # ${VAR} of earlier lines
                value = value.replace("${" + known + "}", text_value)
            values[name] = value
    faked = values.get("FAKED", "")
    library = values.get("FAKEROOT_LIB", "")
    if not faked.startswith("/") or not os.access(faked, os.X_OK) or not library:
        return None
    for directory in values.get("PATHS", "").split(":"):
        candidate = f"{directory}/{library}"
        if directory.startswith("/") and os.path.isfile(candidate):
            getopt = programs.find("getopt", _SYSTEM_PATH) or ""
            return FakerootTool(script, faked, candidate, getopt, elf_interpreter(faked))
    return None


def elf_interpreter(path: str) -> str:
    """The dynamic loader an ELF executable names (PT_INTERP), or ""."""
    import struct

    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] != 1:
                return ""  # not ELF, or big-endian (no host capsa runs on)
            # (e_phoff, e_phentsize, e_phnum) and, in a program header,
            # (p_type, p_offset, p_filesz), for ELF64 and ELF32.
            if head[4] == 2:
                phoff, = struct.unpack_from("<Q", head, 32)
                size, count = struct.unpack_from("<HH", head, 54)
                layout = ("<I", 0, "<Q", 8, "<Q", 32)
            else:
                phoff, = struct.unpack_from("<I", head, 28)
                size, count = struct.unpack_from("<HH", head, 42)
                layout = ("<I", 0, "<I", 4, "<I", 16)
            for index in range(min(count, 64)):
                handle.seek(phoff + index * size)
                entry = handle.read(size)
                kind, = struct.unpack_from(layout[0], entry, layout[1])
                if kind != 3:  # PT_INTERP
                    continue
                offset, = struct.unpack_from(layout[2], entry, layout[3])
                length, = struct.unpack_from(layout[4], entry, layout[5])
                handle.seek(offset)
                return handle.read(min(length, 4096)).rstrip(b"\0").decode(errors="replace")
    except (OSError, ValueError, OverflowError, struct.error):
        return ""
    return ""
