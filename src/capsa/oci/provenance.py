"""Where a converted SIF came from: recorded in the SIF, checked on every use.

Apptainer records the image a SIF was built from among the labels of the
SIF's ``inspect-metadata.json`` object (and of ``/.singularity.d/labels.json``):
``org.opencontainers.image.base.name`` and
``org.opencontainers.image.base.digest``, the manifest digest.  capsa writes
the same for every SIF it converts from an OCI image, and the image config's
digest beside them (:data:`CONFIG_LABEL`).

A cached SIF is used only if that record names the manifest and config the
registry answers with now (:func:`open_checked`), read through the one
descriptor the SIF is then used through.  The record alone proves nothing
(whoever planted a SIF could have written the right one): the cache only
offers files of users this process trusts (:meth:`ContentCache.open_entry`).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from capsa import report
from capsa.content import ContentCache
from capsa.errors import CapsaError
from capsa.jsondoc import load, load_object
from capsa.oci import ImageContent
from capsa.rootfs.layers import SyntheticEntry
from capsa.sif import DataType, NewObject, SifImage

log = report.getLogger("capsa.oci.provenance")

NAME_LABEL = "org.opencontainers.image.base.name"
DIGEST_LABEL = "org.opencontainers.image.base.digest"
CONFIG_LABEL = "capsa.image.base.config.digest"
METADATA_NAME = "inspect-metadata.json"
_MAX_METADATA = 1 << 20
_META = ".singularity.d/"


class Provenance(NamedTuple):
    """The manifest and config digests an image was converted from."""

    manifest: str
    config: str


def of_content(content: ImageContent) -> Provenance | None:
    if not content.manifest_digest or not content.config_digest:
        return None
    return Provenance(content.manifest_digest, content.config_digest)


def record(top: Sequence[SyntheticEntry], name: str, provenance: Provenance | None
           ) -> tuple[list[SyntheticEntry], list[NewObject]]:
    """*top* (the ``/.singularity.d`` entries of a conversion) with the
    provenance among the labels, and the ``inspect-metadata.json`` object
    for the SIF (none without a provenance)."""
    entries = list(top)
    if provenance is None:
        return entries, []
    files = {e.info.name: e for e in entries}
    labels_entry = files.get(_META + "labels.json")
    labels = _labels(labels_entry)
    labels.update({NAME_LABEL: name, DIGEST_LABEL: provenance.manifest,
                   CONFIG_LABEL: provenance.config})
    data = json.dumps(labels, indent="\t", sort_keys=True).encode()
    if labels_entry is not None:
        info = copy.copy(labels_entry.info)
        info.size = len(data)
        entries[entries.index(labels_entry)] = SyntheticEntry(info, data)

    def text(member: str) -> str:
        entry = files.get(_META + member)
        return entry.data.decode(errors="replace") if entry is not None else ""

    attributes = {"labels": labels, "deffile": text("Singularity"),
                  "runscript": text("runscript"), "startscript": text("startscript"),
                  "environment": {"/.singularity.d/env/10-docker2singularity.sh":
                                  text("env/10-docker2singularity.sh")}}
    document = {"data": {"attributes": attributes}, "type": "container"}
    metadata = NewObject(DataType.GENERIC_JSON, data=json.dumps(document).encode(),
                         name=METADATA_NAME)
    return entries, [metadata]


def _labels(entry: SyntheticEntry | None) -> dict[str, str]:
    if entry is None:
        return {}
    try:
        loaded = load(entry.data, "the image's labels")
    except CapsaError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def recorded(sif: SifImage) -> Provenance | None:
    """The provenance a SIF records, or None."""
    found = [d for d in sif.select(data_type=DataType.GENERIC_JSON) if d.name == METADATA_NAME]
    if len(found) != 1 or found[0].size > _MAX_METADATA:
        return None
    try:
        labels: Any = load_object(sif.read(found[0]), METADATA_NAME)["data"]["attributes"][
            "labels"]
    except (CapsaError, KeyError, TypeError):
        return None
    if not isinstance(labels, dict):
        return None
    manifest, config = labels.get(DIGEST_LABEL), labels.get(CONFIG_LABEL)
    if not isinstance(manifest, str) or not isinstance(config, str):
        return None
    return Provenance(manifest, config)


def open_checked(cache: ContentCache, path: Path, expected: Provenance) -> int | None:
    """The cached SIF at *path* open for reading, if a trusted user made it
    from *expected*; None otherwise (a mismatching or corrupt one is
    removed; :class:`capsa.content.CacheBlocked` if it cannot be)."""
    fd = cache.open_entry(path)
    if fd is None:
        return None
    try:
        with SifImage.from_fd(fd, str(path)) as sif:
            sif.primary_partition()
            found = recorded(sif)
    except CapsaError:
        os.close(fd)
        cache.evict(path)
        return None
    if found == expected:
        return fd
    os.close(fd)
    why = "unrecorded" if found is None else "stale"
    log.debug("%s was made from %s, not %s", path, found, expected)
    cache.evict(path, why)
    return None
