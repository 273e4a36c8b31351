"""The frozen values that flow from a request into the launcher.

They are named tuples (:class:`capsa.record.Record`, a ``NamedTuple`` for
mypy) rather than dataclasses: equally immutable and typed, but
``dataclasses`` (with ``inspect``) would add about 5 ms to every ``capsa
exec``, and ``typing.NamedTuple``'s checks of the annotations another 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from capsa.record import Record

if TYPE_CHECKING:
    from capsa.runtime.cgroups import Limits
    from capsa.runtime.gpu import GpuPlan
    from capsa.userns import FakerootTool, IdMap

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LIBS_DIR = "/.singularity.d/libs"


class BindSpec(Record):
    """One ``-B src[:dst[:ro|rw]]``: a host path shown at *dest*."""

    source: str
    dest: str
    readonly: bool = False


class ImageSpec(Record):
    """Where the container's root filesystem comes from.

    ``kind`` is ``"squashfs"`` (a byte range of *path*, e.g. a SIF's system
    partition), ``"ext3"`` (a Singularity 2.x image, mounted by root only) or
    ``"dir"`` (a sandbox directory).  A squashfs or ext3 image is read
    through *fd*, the descriptor it was opened (and verified) as; *path*
    only names it.
    """

    kind: str
    path: str
    offset: int = 0
    size: int = 0
    fd: int = -1


class OverlaySpec(Record):
    """``--overlay DIR[:ro]``: a directory laid over the image."""

    path: str
    readonly: bool = False


class Identity(Record):
    """Who runs inside: ids and the passwd entry of the caller (uid 0 with
    ``--fakeroot``)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    gecos: str
    home: str
    shell: str


class UserNamespace(Record):
    """How this process gets the identity: the user namespace to create
    (None: none, as host root or when it already is root of one), and
    fakeroot(1) to run the command under in a root-mapped namespace, with
    the database it loads and saves (a build's)."""

    fakeroot: bool = False
    idmap: IdMap | None = None
    tool: FakerootTool | None = None
    state: str | None = None


class ProcessSpec(Record):
    """What runs: the action (``exec``, ``run``, ``shell``, ``test``,
    ``start``) and its arguments, where, and as which app or shell."""

    action: str
    argv: tuple[str, ...]
    cwd: str                    # the caller's working directory (bound in, unless contained)
    pwd: str | None = None      # --pwd: the working directory inside
    app: str | None = None
    shell: str | None = None
    no_init: bool = False       # no init as PID 1 of a PID namespace


class MountSpec(Record):
    """What the container's tree holds besides the image."""

    home_source: str
    home_dest: str
    binds: tuple[BindSpec, ...] = ()
    overlays: tuple[OverlaySpec, ...] = ()
    scratch: tuple[str, ...] = ()
    workdir: str | None = None
    no_mount: frozenset[str] = frozenset()
    contain: bool = False
    writable: bool = False
    writable_tmpfs: bool = False
    use_fuse: bool = True       # mount the image (FUSE, loop device); False: extract it
    use_overlay: bool = True    # lay a kernel overlay over the image
    tmpdir: str = "/tmp"        # where the session directory goes


class EnvironmentSpec(Record):
    """The container's environment: host variables passed on, variables
    forced in (``--env``, ``APPTAINERENV_*``), and the image as named."""

    image_ref: str
    forced: tuple[tuple[str, str], ...] = ()
    host: tuple[tuple[str, str], ...] = ()


class NamespaceSpec(Record):
    """The namespaces besides user and mount."""

    pid: bool = False
    ipc: bool = False
    net: bool = False
    hostname: str | None = None  # a UTS namespace with this name


class ContainerSpec(Record):
    """Everything the launcher needs, in parts; made from a request by
    :func:`capsa.runtime.request.container_spec`."""

    image: ImageSpec
    process: ProcessSpec
    mounts: MountSpec
    environment: EnvironmentSpec
    identity: Identity
    userns: UserNamespace = UserNamespace()
    namespaces: NamespaceSpec = NamespaceSpec()
    gpu: GpuPlan | None = None
    limits: Limits | None = None  # --cpus, --memory...: the container's cgroup
    # The job step whose ranks on this node share one container
    # (capsa.runtime.sharens.job_key); None: a container of its own.
    share_key: str | None = None
