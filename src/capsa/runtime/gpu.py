"""What ``--nv``, ``--nvccli`` and ``--rocm`` bind into a container.

The host brings the GPU driver, the container its user space: this module
finds the driver's pieces on the host and describes them as a
:class:`GpuPlan`, which the launcher turns into bind mounts.  It decides
nothing about mounting itself.

- **Libraries** come from a list in Apptainer's ``nvliblist.conf`` /
  ``rocmliblist.conf`` form, resolved through the linker cache
  (``ldconfig -p``); only libraries of the host's own ELF class and machine
  are taken, so 32-bit copies are skipped.  They go to
  ``/.singularity.d/libs/<basename>`` (the runtime puts that directory at the
  end of ``LD_LIBRARY_PATH``, as Apptainer's ``99-base.sh`` does).
- **Programs** (``nvidia-smi``...) are found on ``PATH`` and go to
  ``/usr/bin/<basename>``.
- **Files**: the driver's EGL/Vulkan/OpenCL vendor files and ``nvoptix.bin``
  named in the list, and the persistenced socket, at their own paths.
- **Devices**: under ``--contain`` every ``/dev/nvidia*`` node (ROCm:
  ``/dev/dri/card*``, ``/dev/dri/render*``, ``/dev/kfd``); without it the
  host's whole ``/dev`` is there already, so none are listed.
- Nothing found is a WARNING, never a failure, as in Apptainer.
- ``CUDA_VISIBLE_DEVICES`` is not interpreted here: as in Apptainer's legacy
  mode every GPU is bound and the variable reaches the container like any
  host variable (or through ``APPTAINERENV_CUDA_VISIBLE_DEVICES``), where
  CUDA honours it.  ``NVIDIA_VISIBLE_DEVICES`` matters only to ``--nvccli``.
- ``--nvccli`` asks ``nvidia-container-cli list`` for the driver's files
  (``--device`` from ``NVIDIA_VISIBLE_DEVICES``, ``all`` by default but none
  under ``--contain``, as in Apptainer) and keeps those of the
  ``NVIDIA_DRIVER_CAPABILITIES`` classes (default ``compute,utility``); they
  are bound like ``--nv``'s, so the image need not be writable.

The site copy of a list (``/etc/capsa/nvliblist.conf``,
``/etc/capsa/rocmliblist.conf``) replaces the one shipped in
``capsa/data``.  :func:`gpu_plan` can be pointed at another host tree (the
tests' fake driver, through the site settings the CLI is given): *root*
(devices, programs, data files and the site lists are looked for under it)
and *ldconfig* (the program to ask for the linker cache).  Nothing is read
from the environment for that: a user must not be able to swap the driver
files a container gets.

The exec path imports this module, so it imports nothing heavy; the
subprocess machinery is imported only when a program must run.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from capsa import programs, report
from capsa.errors import ToolError, UsageError
from capsa.runtime.spec import DEFAULT_PATH, LIBS_DIR

if TYPE_CHECKING:
    from capsa.proc import Runner

log = report.getLogger("capsa.runtime.gpu")

BIN_DIR = "/usr/bin"
SITE_CONF_DIR = "/etc/capsa"
PERSISTENCED_SOCKET = "/var/run/nvidia-persistenced/socket"
VENDORS = ("nv", "nvccli", "rocm")
# Apptainer names the platform "nv" for both NVIDIA modes in its warnings.
_PLATFORM = {"nv": "nv", "nvccli": "nv", "rocm": "rocm"}
_LISTS = {"nv": "nvliblist.conf", "nvccli": "nvliblist.conf", "rocm": "rocmliblist.conf"}
_DATA_SUFFIXES = (".json", ".bin", ".icd")
_NO_ENV: Mapping[str, str] = MappingProxyType({})
# `ldconfig -p` lines: "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/.../libcuda.so.1"
_LDCACHE_LINE = re.compile(r"^\s*(\S+)\s+\(([^)]*)\)\s*=>\s*(.+?)\s*$")
# What a contained /dev needs: Apptainer's NvidiaDevices / RocmDevices globs.
_DEVICE_GLOBS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "nv": ("nvidia*",),
    "rocm": ("dri/card*", "dri/render*", "kfd"),
})
_NVIDIA_GPU_NODE = re.compile(r"/nvidia\d+$")
# Driver capabilities nvidia-container-cli knows (NVIDIA_DRIVER_CAPABILITIES),
# and the default when the variable is unset, as in Apptainer.
NV_DRIVER_CAPABILITIES = ("compute", "compat32", "graphics", "utility", "video", "display")
NV_DEFAULT_CAPABILITIES = ("compute", "utility")
# The driver files each capability brings, by name prefix, following the
# classes libnvidia-container sorts the driver into: its `configure` mounts
# only the classes asked for, while `list` prints them all.  A file in no
# class is kept.
_CAPABILITY_FILES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "utility": ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nv-fabricmanager",
                "libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"),
    "compute": ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server", "libcuda.so",
                "libcudadebugger.so", "libnvidia-opencl.so", "libnvidia-gpucomp.so",
                "libnvidia-ptxjitcompiler.so", "libnvidia-fatbinaryloader.so",
                "libnvidia-allocator.so", "libnvidia-compiler.so", "libnvidia-pkcs11",
                "libnvidia-nvvm.so"),
    "video": ("libvdpau_nvidia.so", "libnvidia-encode.so", "libnvidia-opticalflow.so",
              "libnvcuvid.so"),
    "graphics": ("libnvidia-eglcore.so", "libnvidia-glcore.so", "libnvidia-tls.so",
                 "libnvidia-glsi.so", "libnvidia-fbc.so", "libnvidia-ifr.so",
                 "libnvidia-rtcore.so", "libnvoptix.so", "libGLX_nvidia.so", "libEGL_nvidia.so",
                 "libGLESv2_nvidia.so", "libGLESv1_CM_nvidia.so", "libnvidia-glvkspirv.so",
                 "libnvidia-cbl.so", "libnvidia-egl-wayland.so", "libnvidia-egl-gbm.so",
                 "libGL.so", "libEGL.so", "libGLESv1_CM.so", "libGLESv2.so"),
    "display": ("nvidia_drv.so", "libglxserver_nvidia.so"),
})


@dataclass(frozen=True)
class GpuPlan:
    """Everything a GPU flag adds to a container, as host paths."""

    libraries: tuple[str, ...] = ()  # host library paths -> /.singularity.d/libs/<basename>
    binaries: tuple[str, ...] = ()  # host paths -> /usr/bin/<basename>
    files: tuple[tuple[str, str], ...] = ()  # (host path, container path) extra binds
    devices: tuple[str, ...] = ()  # host /dev paths that must be present (under --contain)
    env: tuple[tuple[str, str], ...] = ()  # variables to set inside
    warnings: tuple[str, ...] = ()  # e.g. no GPU found: a WARNING, not a failure

    def binds(self) -> tuple[tuple[str, str], ...]:
        """(host path, container path) of every file bind, devices aside."""
        return (
            *((lib, f"{LIBS_DIR}/{os.path.basename(lib)}") for lib in self.libraries),
            *((prog, f"{BIN_DIR}/{os.path.basename(prog)}") for prog in self.binaries),
            *self.files,
        )

    def device_binds(self) -> tuple[tuple[str, str], ...]:
        """(host node, container node) for a contained ``/dev``."""
        return tuple((dev, device_target(dev)) for dev in self.devices)

    def merged(self, other: GpuPlan) -> GpuPlan:
        """Both plans at once (``--nv --rocm``), first occurrence winning."""
        return GpuPlan(
            libraries=_unique_basenames((*self.libraries, *other.libraries)),
            binaries=_unique_basenames((*self.binaries, *other.binaries)),
            files=tuple(dict.fromkeys((*self.files, *other.files))),
            devices=tuple(dict.fromkeys((*self.devices, *other.devices))),
            env=tuple(dict.fromkeys((*self.env, *other.env))),
            warnings=(*self.warnings, *other.warnings),
        )


def device_target(host_path: str, root: str | None = None) -> str:
    """Where a device of the plan appears inside the container.

    Devices are host paths; under another root (``gpu_plan(root=...)``) they lie
    below it, and the container sees them at the path relative to it.
    Without *root*, the part from the last ``/dev/`` on is kept, which is
    the same for any root.
    """
    if root is not None:
        return "/" + os.path.relpath(host_path, root)
    _before, sep, rest = host_path.rpartition("/dev/")
    return f"/dev/{rest}" if sep else host_path


# --- the list file -------------------------------------------------------


class LibList(NamedTuple):
    """One ``*liblist.conf``, sorted by kind of entry."""

    libraries: tuple[str, ...] = ()  # names (prefixes in the cache) or absolute paths
    programs: tuple[str, ...] = ()  # names looked up on PATH, or absolute paths
    data_files: tuple[str, ...] = ()  # absolute container-side paths


def parse_liblist(text: str) -> LibList:
    """Sort the entries of a list file as Apptainer reads them."""
    libraries: list[str] = []
    programs: list[str] = []
    data_files: list[str] = []
    for raw in text.splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("/") and entry.endswith(_DATA_SUFFIXES):
            data_files.append(entry)
        elif ".so" in entry:
            libraries.append(entry)
        else:
            programs.append(entry)
    return LibList(tuple(libraries), tuple(programs), tuple(data_files))


def liblist_candidates(vendor: str, root: str = "/", confdirs: Sequence[str] = (),
                       site_dir: str = SITE_CONF_DIR) -> tuple[str, ...]:
    """The list files to try, best first: *confdirs*, the site copy (in
    *site_dir*), capsa's own."""
    name = _LISTS[vendor]
    site = [_under(root, os.path.join(d, name)) for d in (*confdirs, site_dir)]
    return (*site, shipped_liblist(vendor))


def shipped_liblist(vendor: str) -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(here, "data", _LISTS[vendor])


def read_first(paths: Iterable[str]) -> tuple[str, str]:
    """The path and text of the first readable file among *paths*."""
    tried = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                return path, handle.read()
        except FileNotFoundError:
            tried.append(path)
        except OSError as err:
            raise ToolError(f"could not read {path}: {err.strerror}") from err
    raise ToolError(f"no GPU library list found (tried {', '.join(tried)})")


# --- the linker cache and ELF headers ----------------------------------------


class CacheEntry(NamedTuple):
    name: str  # "libcuda.so.1"
    flags: str  # "libc6,x86-64"
    path: str  # "/usr/lib/x86_64-linux-gnu/libcuda.so.1"


def parse_ldcache(text: str) -> tuple[CacheEntry, ...]:
    """The entries of ``ldconfig -p`` output, in its order (best first)."""
    entries = []
    for line in text.splitlines():
        match = _LDCACHE_LINE.match(line)
        if match is not None:
            entries.append(CacheEntry(match[1], match[2], match[3]))
    return tuple(entries)


def elf_kind(path: str) -> tuple[int, int] | None:
    """(ELF class, machine) of the file at *path*, or None if it is no ELF."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    machine = header[18:20]
    return header[4], int.from_bytes(machine, "little" if header[5] == 1 else "big")


def host_elf_kind() -> tuple[int, int] | None:
    """What this process runs as: the libraries bound must match it."""
    return elf_kind("/proc/self/exe")


# --- discovery ---------------------------------------------------------------


class HostTree(NamedTuple):
    """The host as discovery sees it; tests build a fake one."""

    ldcache: str = ""  # `ldconfig -p` output
    root: str = "/"  # devices, programs and data files are looked for under it
    path: str = DEFAULT_PATH  # where programs are looked up
    machine: tuple[int, int] | None = None  # ELF (class, machine) to accept; None: any
    ldcache_error: str | None = None  # why the cache could not be read, if so


def discover(vendor: str, liblist_text: str, host: HostTree, *, contain: bool) -> GpuPlan:
    """The plan for ``--nv`` (legacy binds) or ``--rocm`` from a list's text."""
    if vendor not in ("nv", "rocm"):
        raise UsageError(f"unknown GPU platform {vendor!r}")
    wanted = parse_liblist(liblist_text)
    warnings: list[str] = []
    if host.ldcache_error is not None:
        warnings.append(f"While finding {vendor} bind points: {host.ldcache_error}")
    libraries = find_libraries(wanted.libraries, parse_ldcache(host.ldcache), host.machine)
    binaries = find_programs(wanted.programs, host.root, host.path)
    files = [*find_data_files(wanted.data_files, host.root), *_ipcs(vendor, host.root)]
    devices = find_devices(vendor, host.root) if contain else ()
    return GpuPlan(
        libraries=libraries,
        binaries=binaries,
        files=tuple(files),
        devices=devices,
        warnings=(*warnings, *_missing(vendor, libraries, binaries, files)),
    )


def _missing(vendor: str, libraries: Sequence[str], binaries: Sequence[str],
             files: Sequence[object]) -> list[str]:
    """Apptainer's two warnings when a host has nothing to offer."""
    platform = _PLATFORM[vendor]
    found = []
    if not binaries and not files:
        found.append(f"Could not find any {platform} files on this host!")
    if not libraries:
        found.append(f"Could not find any {platform} libraries on this host!")
    return found


def find_libraries(wanted: Sequence[str], cache: Sequence[CacheEntry],
                   machine: tuple[int, int] | None) -> tuple[str, ...]:
    """Host paths of the libraries *wanted* names, for the host's ELF kind.

    A bare name matches every cache entry whose name starts with it
    (``libcuda.so`` finds ``libcuda.so.1`` and ``libcuda.so``); of entries of
    the same name, the first of the right kind wins, as for the loader.
    """
    found: list[str] = []
    for item in wanted:
        if item.startswith("/"):
            found.extend(_absolute_library(item, machine))
            continue
        for entry in cache:
            if entry.name.startswith(item) and _fits(entry.path, machine):
                found.append(entry.path)
    return _unique_basenames(found)


def _fits(path: str, machine: tuple[int, int] | None) -> bool:
    kind = elf_kind(path)
    return kind is not None and (machine is None or kind == machine)


def _absolute_library(path: str, machine: tuple[int, int] | None) -> list[str]:
    """An absolute library and the symlinks beside it that lead to it."""
    if not _fits(path, machine):
        return []
    real = os.path.realpath(path)
    bare = path.split(".so", 1)[0] + ".so"
    links = [p for p in sorted(glob.glob(glob.escape(bare) + "*"))
             if p != path and os.path.islink(p) and os.path.realpath(p) == real]
    return [path, *links]


def _unique_basenames(paths: Iterable[str]) -> tuple[str, ...]:
    """Keep the first path of each basename: they share one directory inside."""
    chosen: dict[str, str] = {}
    for path in paths:
        chosen.setdefault(os.path.basename(path), path)
    return tuple(chosen.values())


def find_programs(wanted: Sequence[str], root: str, path: str) -> tuple[str, ...]:
    """Host paths of the programs *wanted* names, looked up on *path*."""
    found = []
    for name in wanted:
        located = programs.find(name, path, root=root)
        if located is not None:
            found.append(located)
    return _unique_basenames(found)


def find_data_files(wanted: Sequence[str], root: str) -> tuple[tuple[str, str], ...]:
    """(host path, container path) of the data files the host has."""
    return tuple((_under(root, p), p) for p in wanted if os.path.isfile(_under(root, p)))


def _ipcs(vendor: str, root: str) -> list[tuple[str, str]]:
    """The persistenced socket, where the daemon runs (NVIDIA only)."""
    if vendor == "rocm":
        return []
    socket = _under(root, PERSISTENCED_SOCKET)
    if not os.path.exists(socket):
        # Not running is fine: persistenced is optional.
        log.debug("persistenced socket %s not found", PERSISTENCED_SOCKET)
        return []
    return [(socket, PERSISTENCED_SOCKET)]


def find_devices(vendor: str, root: str = "/") -> tuple[str, ...]:
    """The device nodes a contained ``/dev`` must offer for *vendor*."""
    dev = _under(root, "/dev")
    patterns = _DEVICE_GLOBS["rocm" if vendor == "rocm" else "nv"]
    found: list[str] = []
    for pattern in patterns:
        for match in sorted(glob.glob(os.path.join(glob.escape(dev), pattern))):
            found.extend(_nodes_in(match))
    return tuple(found)


def _nodes_in(path: str) -> list[str]:
    """*path*, or the nodes below it when it is a directory (``/dev/nvidia-caps``)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return [path]
    return sorted(os.path.join(top, name) for top, _dirs, names in os.walk(path)
                  for name in names)


def _under(root: str, path: str) -> str:
    """*path* (absolute) seen from *root*."""
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


# --- nvidia-container-cli -----------------------------------------------------


def nvccli_request(environ: Mapping[str, str], *, contain: bool,
                   unprivileged: bool) -> tuple[list[str], GpuPlan]:
    """The ``nvidia-container-cli`` arguments for *environ*, and what they imply.

    Returns the arguments after the program name and a plan holding only
    the environment and warnings that go with them.  As in Apptainer, an
    unset ``NVIDIA_VISIBLE_DEVICES`` means every GPU, except under
    ``--contain`` where it means none (with a warning).
    """
    visible = environ.get("NVIDIA_VISIBLE_DEVICES", "")
    env: list[tuple[str, str]] = []
    warnings: list[str] = []
    if not visible:
        if contain:
            warnings.append("When using nvidia-container-cli with --contain "
                            "NVIDIA_VISIBLE_DEVICES must be set or no GPUs will be "
                            "available in container.")
        else:
            log.info("Setting 'NVIDIA_VISIBLE_DEVICES=all' to emulate legacy GPU binding.")
            visible = "all"
            env.append(("NVIDIA_VISIBLE_DEVICES", "all"))
    _check_capabilities(environ.get("NVIDIA_DRIVER_CAPABILITIES", ""))
    argv = ["--user"] if unprivileged else []
    argv += ["list", "--binaries", "--libraries", "--ipcs"]
    if visible:
        argv.append(f"--device={visible}")
    for name, flag in (("NVIDIA_MIG_CONFIG_DEVICES", "--mig-config"),
                       ("NVIDIA_MIG_MONITOR_DEVICES", "--mig-monitor")):
        if environ.get(name):
            argv.append(f"{flag}={environ[name]}")
    return argv, GpuPlan(env=tuple(env), warnings=tuple(warnings))


def _check_capabilities(value: str) -> tuple[str, ...]:
    """The capabilities NVIDIA_DRIVER_CAPABILITIES asks for (``all``: every one)."""
    asked = tuple(filter(None, (c.strip() for c in value.split(","))))
    for capability in asked:
        if capability != "all" and capability not in NV_DRIVER_CAPABILITIES:
            raise UsageError(f"unknown NVIDIA_DRIVER_CAPABILITIES value: {capability}")
    if "all" in asked:
        return NV_DRIVER_CAPABILITIES
    return asked or NV_DEFAULT_CAPABILITIES


def capability_allows(path: str, capabilities: Sequence[str]) -> bool:
    """Whether a driver file belongs to one of *capabilities* (or to no class)."""
    name = os.path.basename(path)
    classes = [cap for cap, prefixes in _CAPABILITY_FILES.items()
               if name.startswith(prefixes)]
    return not classes or any(cap in capabilities for cap in classes)


def plan_from_nvccli_listing(listing: str, *, contain: bool, visible: str,
                             machine: tuple[int, int] | None = None,
                             capabilities: Sequence[str] = NV_DRIVER_CAPABILITIES) -> GpuPlan:
    """Sort the paths ``nvidia-container-cli list`` printed into a plan.

    The CLI names each library by its real, fully versioned file; the
    symlinks beside it that carry the names programs load (``libcuda.so.1``)
    are added, as Apptainer does for absolute library paths.  Programs and
    libraries outside *capabilities* are left out, as ``configure`` would.
    """
    libraries: list[str] = []
    binaries: list[str] = []
    files: list[tuple[str, str]] = []
    devices: list[str] = []
    for line in listing.splitlines():
        path = line.strip()
        if not path.startswith("/"):
            continue
        if path.startswith("/dev/"):
            devices.append(path)
        elif not capability_allows(path, capabilities):
            continue
        elif ".so" in os.path.basename(path):
            libraries.extend(_absolute_library(path, machine))
        elif path.startswith(("/var/run/", "/run/", "/tmp/")):
            files.append((path, path))
        else:
            binaries.append(path)
    if not visible:  # --contain without NVIDIA_VISIBLE_DEVICES: no GPU nodes
        devices = [d for d in devices if _NVIDIA_GPU_NODE.search(d) is None]
    libs = _unique_basenames(libraries)
    bins = _unique_basenames(binaries)
    return GpuPlan(
        libraries=libs,
        binaries=bins,
        files=tuple(files),
        devices=tuple(devices) if contain else (),
        warnings=tuple(_missing("nvccli", libs, bins, files)),
    )


def nvccli_plan(environ: Mapping[str, str], *, contain: bool, runner: Runner,
                unprivileged: bool, machine: tuple[int, int] | None = None) -> GpuPlan:
    """The plan for ``--nvccli``: ask ``nvidia-container-cli`` what to bind."""
    program = programs.find("nvidia-container-cli", environ.get("PATH") or DEFAULT_PATH)
    if program is None:
        raise ToolError("nvidia-container-cli not found in PATH: --nvccli needs "
                        "the NVIDIA container toolkit (libnvidia-container-tools); "
                        "use --nv for the binds capsa finds itself")
    args, request = nvccli_request(environ, contain=contain, unprivileged=unprivileged)
    done = runner.run([program, *args], check=True)
    visible = dict(request.env).get("NVIDIA_VISIBLE_DEVICES",
                                    environ.get("NVIDIA_VISIBLE_DEVICES", ""))
    capabilities = _check_capabilities(environ.get("NVIDIA_DRIVER_CAPABILITIES", ""))
    found = plan_from_nvccli_listing(done.stdout.decode(errors="replace"),
                                     contain=contain, visible=visible, machine=machine,
                                     capabilities=capabilities)
    return GpuPlan(found.libraries, found.binaries, found.files, found.devices,
                   request.env, (*request.warnings, *found.warnings))


# --- the runtime's entry point ----------------------------------------------


def read_ldcache(environ: Mapping[str, str], runner: Runner,
                 ldconfig: str | None = None) -> tuple[str, str | None]:
    """``ldconfig -p`` output (of *ldconfig*, else the one on ``PATH``), or an
    empty cache and the reason it failed."""
    program = ldconfig or programs.find(
        "ldconfig", f"{environ.get('PATH') or DEFAULT_PATH}:/sbin:/usr/sbin")
    if program is None:
        return "", "could not retrieve ld cache: ldconfig not found"
    try:
        done = runner.run([program, "-p"], check=True)
    except ToolError as err:
        return "", f"could not retrieve ld cache: {err}"
    return done.stdout.decode(errors="replace"), None


def gpu_plan(vendor: str, *, contain: bool,
             environ: Mapping[str, str] = _NO_ENV,
             runner: Runner | None = None,
             confdirs: Sequence[str] = (),
             root: str = "/", ldconfig: str | None = None,
             site_dir: str = SITE_CONF_DIR) -> GpuPlan:
    """What ``--nv`` (``"nv"``), ``--nvccli`` (``"nvccli"``) or ``--rocm``
    (``"rocm"``) binds, found on this host (or the tree at *root*).

    *environ* is the host environment capsa was started with (``PATH``,
    ``NVIDIA_*``); nothing is read from ``os.environ`` here.  *confdirs* are
    extra directories to look for a site list in, before *site_dir*;
    *ldconfig* the program printing the linker cache.
    """
    if vendor not in VENDORS:
        raise UsageError(f"unknown GPU platform {vendor!r} (expected one of {VENDORS})")
    if runner is None:
        from capsa.proc import DEFAULT_RUNNER

        runner = DEFAULT_RUNNER
    machine = host_elf_kind()
    if vendor == "nvccli":
        return nvccli_plan(environ, contain=contain, runner=runner,
                           unprivileged=os.geteuid() != 0, machine=machine)
    ldcache, error = read_ldcache(environ, runner, ldconfig)
    _path, text = read_first(liblist_candidates(vendor, root, confdirs, site_dir))
    host = HostTree(ldcache=ldcache, root=root, path=environ.get("PATH") or DEFAULT_PATH,
                    machine=machine, ldcache_error=error)
    return discover(vendor, text, host, contain=contain)


__all__ = [
    "BIN_DIR",
    "LIBS_DIR",
    "GpuPlan",
    "HostTree",
    "LibList",
    "device_target",
    "discover",
    "gpu_plan",
    "nvccli_plan",
    "nvccli_request",
    "parse_ldcache",
    "parse_liblist",
    "plan_from_nvccli_listing",
]
