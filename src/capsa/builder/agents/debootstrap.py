"""``Bootstrap: debootstrap``: a Debian or Ubuntu tree made by debootstrap.

As real root it runs as it is.  As root of a user namespace with
subordinate ids (an unprivileged build) it runs in a mount namespace of its
own where, as Apptainer arranges it, ``mount`` and ``mknod`` are
``/bin/true`` (a user namespace may neither make device nodes nor mount
``/proc`` and ``/sys`` over a chroot), ``/proc/filesystems`` is empty (so no
sysfs is tried) and the few device nodes a chroot needs are the host's,
bound in.  A root-mapped namespace cannot work: dpkg changes owners to ids
that do not exist there.
"""

from __future__ import annotations

from pathlib import Path

from capsa import report
from capsa.builder.agents import AgentContext, Base
from capsa.builder.sandbox import host_root, is_root
from capsa.deffile.model import Stage
from capsa.errors import EnvironmentFailure, ToolError, UsageError
from capsa.programs import require
from capsa.userns import current_map

log = report.getLogger("capsa.builder")

_DEVICES = ("null", "zero", "random", "urandom")
# Runs in the private mount namespace: "$1" is the rootfs, the rest debootstrap's argv.
_FAKE_ENV = r"""set -e
rootfs=$1; shift
mkdir -p "$rootfs/dev"
for node in null zero random urandom; do
    : > "$rootfs/dev/$node"
    mount --bind "/dev/$node" "$rootfs/dev/$node"
done
mount --bind /dev/null /proc/filesystems
true=/bin/true; [ -x "$true" ] || true=/usr/bin/true
mount --bind "$true" "$(command -v mknod)"
mount --bind "$true" "$(command -v mount)"
exec "$@"
"""


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    suite = stage.get("osversion")
    mirror = stage.get("mirrorurl")
    if not suite or not mirror:
        raise UsageError("Bootstrap: debootstrap needs OSVersion and MirrorURL")
    argv = [require("debootstrap"), "--variant=minbase"]
    include = stage.get("include").replace(" ", ",").strip(",")
    if include:
        argv.append(f"--include={include}")
    argv += [suite, str(rootfs), mirror]
    log.info("Running debootstrap for %s from %s", suite, mirror)
    if host_root():
        context.runner.run(argv, capture=False)
        return Base(name=f"{mirror} {suite}")
    try:
        context.runner.run(_in_fake_environment(argv, rootfs), capture=False)
    except ToolError as err:
        raise ToolError(f"debootstrap failed in the user namespace: {err}") from err
    return Base(name=f"{mirror} {suite}")


def _in_fake_environment(argv: list[str], rootfs: Path) -> list[str]:
    namespace = current_map() if is_root() else None
    if namespace is None or not namespace.wide:
        raise EnvironmentFailure(
            "Bootstrap: debootstrap must be run as root, or by a user with a range of "
            "subordinate ids in /etc/subuid and /etc/subgid (use Bootstrap: docker for "
            "other unprivileged builds)")
    return [require("unshare"), "--mount", "--propagation", "private", "--",
            require("sh"), "-c", _FAKE_ENV, "debootstrap", str(rootfs), *argv]
