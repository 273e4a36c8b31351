"""``Bootstrap: busybox``: one static busybox and its applet links.

The binary comes from the host (Debian's ``busybox-static``); a
``MirrorURL`` is not downloaded (a warning says so).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from capsa import report
from capsa.builder.agents import AgentContext, Base
from capsa.deffile.model import Stage
from capsa.errors import NotFoundError

log = report.getLogger("capsa.builder")

_HOST_BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
_PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
_GROUP = "root:x:0:\n"


def _host_busybox() -> Path:
    for candidate in _HOST_BUSYBOX:
        if Path(candidate).is_file():
            return Path(candidate)
    raise NotFoundError("Bootstrap: busybox needs a static busybox on "
                        "this host (Debian: apt-get install busybox-static)")


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    binary = _host_busybox()
    if stage.get("mirrorurl"):
        log.warning("Bootstrap: busybox: MirrorURL is not downloaded; using this host's "
                    "%s instead", binary)
    bindir = rootfs / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(binary, bindir / "busybox")
    (bindir / "busybox").chmod(0o755)
    listing = context.runner.run([str(binary), "--list"]).stdout.decode().split()
    for applet in listing:
        if applet and "/" not in applet and applet != "busybox":
            link = bindir / applet
            if not link.exists():
                link.symlink_to("busybox")
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(_PASSWD)
    (etc / "group").write_text(_GROUP)
    return Base(name="busybox")
