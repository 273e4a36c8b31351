"""The frozen values that flow from the CLI into the launcher.

They are ``NamedTuple``s rather than dataclasses: equally immutable and
typed, but ``dataclasses`` (with ``inspect``) would add about 5 ms to every
``capsa exec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from capsa.runtime.cgroups import Limits
    from capsa.runtime.gpu import GpuPlan
    from capsa.userns import FakerootTool, IdMap

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LIBS_DIR = "/.singularity.d/libs"


class BindSpec(NamedTuple):
    """One ``-B src[:dst[:ro|rw]]``: a host path shown at *dest*."""

    source: str
    dest: str
    readonly: bool = False


class ImageSpec(NamedTuple):
    """Where the container's root filesystem comes from.

    ``kind`` is ``"squashfs"`` (a byte range of *path*, e.g. a SIF's system
    partition), ``"ext3"`` (a Singularity 2.x image, mounted by root only) or
    ``"dir"`` (a sandbox directory).
    """

    kind: str
    path: str
    offset: int = 0
    size: int = 0


class OverlaySpec(NamedTuple):
    """``--overlay DIR[:ro]``: a directory laid over the image."""

    path: str
    readonly: bool = False


class Identity(NamedTuple):
    """Who runs inside: ids and the passwd entry of the caller."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    gecos: str
    home: str
    shell: str


class ContainerSpec(NamedTuple):
    """Everything the launcher needs; built and validated by the CLI."""

    image: ImageSpec
    image_ref: str
    action: str
    argv: tuple[str, ...]
    identity: Identity
    cwd: str
    home_source: str
    home_dest: str
    binds: tuple[BindSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    host_env: tuple[tuple[str, str], ...] = ()
    pwd: str | None = None
    hostname: str | None = None
    app: str | None = None
    shell: str | None = None
    overlays: tuple[OverlaySpec, ...] = ()
    workdir: str | None = None
    scratch: tuple[str, ...] = ()
    no_mount: frozenset[str] = frozenset()
    contain: bool = False
    pid_ns: bool = False
    ipc_ns: bool = False
    net_ns: bool = False
    no_init: bool = False
    writable: bool = False
    writable_tmpfs: bool = False
    fakeroot: bool = False
    use_fuse: bool = True
    gpu: GpuPlan | None = None
    limits: Limits | None = None  # --cpus, --memory...: the container's cgroup
    # The user namespace to create (None: none, as host root or when this
    # process already is root of one); fakeroot(1) to run the command under
    # in a root-mapped namespace, and the database it loads and saves.
    idmap: IdMap | None = None
    fakeroot_tool: FakerootTool | None = None
    fakeroot_state: str | None = None
    # The job step whose ranks on this node share one container
    # (capsa.runtime.sharens.job_key); None: a container of its own.
    share_key: str | None = None
