"""Bootstrap agents: each fills an empty root filesystem for one stage.

One module per family, looked up by the stage's ``Bootstrap:`` value; an
agent returns what it learnt about the base (:class:`Base`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from capsa.builder.sandbox import REAL_OWNERS, Ownership
from capsa.deffile.model import Stage
from capsa.errors import UsageError
from capsa.proc import DEFAULT_RUNNER, Runner
from capsa.pulling import PullOptions

# Bootstrap: value -> module under capsa.builder.agents
AGENTS: dict[str, str] = {
    "docker": "oci",
    "oci": "oci",
    "oci-archive": "oci",
    "docker-archive": "oci",
    "oras": "oci",
    "localimage": "localimage",
    "scratch": "scratch",
    "busybox": "busybox",
    "debootstrap": "debootstrap",
}


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What agents may use: a scratch directory, pull settings, a runner."""

    work: Path
    pull: PullOptions = field(default_factory=PullOptions)
    runner: Runner = DEFAULT_RUNNER
    ownership: Ownership = REAL_OWNERS


@dataclass(frozen=True, slots=True)
class Base:
    """The base image: where it came from and whether it brought the
    ``/.singularity.d`` tree along."""

    name: str = ""
    digest: str = ""
    has_metadata: bool = False
    oci_config: bytes = b""         # the base's oci-config.json, carried into the SIF


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    """Fill *rootfs* (an existing empty directory) for *stage*."""
    agent = stage.bootstrap
    module = AGENTS.get(agent)
    if module is None:
        raise UsageError(f"invalid build agent {stage.get('bootstrap')!r} "
                         f"(supported: {', '.join(sorted(AGENTS))})")
    loaded = importlib.import_module(f"capsa.builder.agents.{module}")
    base: Base = loaded.bootstrap(stage, rootfs, context)
    return base
