"""``Bootstrap: debootstrap``: a Debian or Ubuntu tree made by debootstrap
(root only: it creates device nodes and chroots)."""

from __future__ import annotations

import os
from pathlib import Path

from capsa import report
from capsa.build.agents import AgentContext, Base
from capsa.deffile.model import Stage
from capsa.errors import EnvironmentFailure, UsageError
from capsa.proc import require

log = report.getLogger("capsa.build")


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    if os.geteuid() != 0:
        raise EnvironmentFailure("Bootstrap: debootstrap must be run as root "
                                 "(use Bootstrap: docker for unprivileged builds)")
    suite = stage.get("osversion")
    mirror = stage.get("mirrorurl")
    if not suite or not mirror:
        raise UsageError("Bootstrap: debootstrap needs OSVersion and MirrorURL")
    argv = [require("debootstrap"), "--variant=minbase"]
    include = stage.get("include").replace(" ", ",").strip(",")
    if include:
        argv.append(f"--include={include}")
    log.info("Running debootstrap for %s from %s", suite, mirror)
    context.runner.run([*argv, suite, str(rootfs), mirror], capture=False)
    return Base(name=f"{mirror} {suite}")
