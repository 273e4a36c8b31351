"""``Bootstrap: docker|oci|oci-archive|docker-archive|oras``: through the
pull pipeline (registry, cache, layer merge, ``/.singularity.d``; a SIF
artifact as it is for ``oras``), then unpacked."""

from __future__ import annotations

from pathlib import Path

from capsa import report
from capsa.builder.agents import AgentContext, Base
from capsa.builder.sandbox import unpack_image
from capsa.deffile.model import Stage
from capsa.errors import UsageError

log = report.getLogger("capsa.builder")


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
    from capsa.pulling import pull

    uri = source_uri(stage)
    log.info("Fetching OCI image...")
    image = context.work / "base.sif"
    if uri.startswith("docker://") and context.pull.cache is not None:
        digest = _copy_from_cache(uri, image, context)
    else:
        digest = pull(uri, image, context.pull).manifest_digest or ""
    log.info("Extracting OCI image...")
    unpack_image(image, rootfs, context.runner, context.ownership)
    config = _oci_config(image)
    if image.parent == context.work:
        image.unlink()
    return Base(name=uri, digest=digest, has_metadata=(rootfs / ".singularity.d").is_dir(),
                oci_config=config)


def _copy_from_cache(uri: str, dest: Path, context: AgentContext) -> str:
    """The cached SIF for *uri*, copied from the descriptor it was checked
    through (another user of a shared cache may swap the file meanwhile);
    the manifest digest it was made from."""
    import os

    from capsa.content import copy_atomic
    from capsa.pulling import open_cached_image

    cached = open_cached_image(uri, context.pull)
    try:
        copy_atomic(cached.fd, dest, 0o600)
    finally:
        os.close(cached.fd)
    return cached.manifest_digest


def _oci_config(image: Path) -> bytes:
    """The ``oci-config.json`` object the pull wrote, if any."""
    from capsa.sif import DataType, SifImage

    with SifImage.open(image) as sif:
        for descriptor in sif.select(data_type=DataType.GENERIC_JSON):
            if descriptor.name == "oci-config.json" and descriptor.size <= 1 << 20:
                return sif.read(descriptor)
    return b""
