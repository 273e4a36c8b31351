"""``Bootstrap: busybox``: one static busybox and its applet links.

Without ``MirrorURL`` the binary comes from the host (Debian's
``busybox-static``); downloading one is not supported.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from capsa.build.agents import AgentContext, Base
from capsa.deffile.model import Stage
from capsa.errors import NotFoundError, UsageError

_HOST_BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
_PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
_GROUP = "root:x:0:\n"


def _host_busybox() -> Path:
    for candidate in _HOST_BUSYBOX:
        if Path(candidate).is_file():
            return Path(candidate)
    raise NotFoundError("Bootstrap: busybox without MirrorURL needs a static busybox on "
                        "this host (Debian: apt-get install busybox-static)")


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    if stage.get("mirrorurl"):
        raise UsageError("Bootstrap: busybox with MirrorURL is not supported: remove "
                         "MirrorURL to use this host's busybox-static")
    binary = _host_busybox()
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
