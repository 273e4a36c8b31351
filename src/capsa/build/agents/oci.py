"""``Bootstrap: docker|oci|oci-archive|docker-archive|oras``: through the
pull pipeline (registry, cache, layer merge, ``/.singularity.d``; a SIF
artifact as it is for ``oras``), then unpacked."""

from __future__ import annotations

from pathlib import Path

from capsa import report
from capsa.build.agents import AgentContext, Base
from capsa.build.sandbox import unpack_image
from capsa.deffile.model import Stage
from capsa.errors import UsageError

log = report.getLogger("capsa.build")


def source_uri(stage: Stage) -> str:
    """The pull URI of a stage: ``Registry``/``Namespace`` prefix ``From``."""
    source = stage.get("from")
    if not source:
        raise UsageError(f"Bootstrap: {stage.bootstrap} needs a From: image")
    agent = stage.bootstrap
    source = source.removeprefix(f"{agent}:").removeprefix("//")  # From: docker://x
    if agent == "oras":
        return f"oras://{source}"
    if agent != "docker":
        return f"{agent}:{source}"
    parts = [p.strip("/") for p in (stage.get("registry"), stage.get("namespace")) if p]
    return "docker://" + "/".join([*parts, source])


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    from capsa.pull import pull, pull_into_cache

    uri = source_uri(stage)
    log.info("Fetching OCI image...")
    if uri.startswith("docker://") and context.pull.cache is not None:
        pulled = pull_into_cache(uri, context.pull)
    else:
        pulled = pull(uri, context.work / "base.sif", context.pull)
    image, digest = pulled.dest, pulled.manifest_digest or ""
    log.info("Extracting OCI image...")
    unpack_image(image, rootfs, context.runner, context.ownership)
    config = _oci_config(image)
    if image.parent == context.work:
        image.unlink()
    return Base(name=uri, digest=digest, has_metadata=(rootfs / ".singularity.d").is_dir(),
                oci_config=config)


def _oci_config(image: Path) -> bytes:
    """The ``oci-config.json`` object the pull wrote, if any."""
    from capsa.sif import DataType, SifImage

    with SifImage.open(image) as sif:
        for descriptor in sif.select(data_type=DataType.GENERIC_JSON):
            if descriptor.name == "oci-config.json" and descriptor.size <= 1 << 20:
                return sif.read(descriptor)
    return b""
