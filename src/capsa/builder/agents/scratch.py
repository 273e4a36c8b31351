"""``Bootstrap: scratch``: an empty root filesystem, filled by the build."""

from __future__ import annotations

from pathlib import Path

from capsa.builder.agents import AgentContext, Base
from capsa.deffile.model import Stage


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    del stage, rootfs, context
    return Base(name="scratch")
