"""``Bootstrap: localimage``: a SIF file, a squashfs or a sandbox directory."""

from __future__ import annotations

from pathlib import Path

from capsa import report
from capsa.builder.agents import AgentContext, Base
from capsa.builder.sandbox import copy_tree, unpack_image
from capsa.deffile.model import Stage
from capsa.errors import CapsaError, NotFoundError, SignatureError, UsageError

log = report.getLogger("capsa.builder")


def bootstrap(stage: Stage, rootfs: Path, context: AgentContext) -> Base:
    source = stage.get("from")
    if not source:
        raise UsageError("Bootstrap: localimage needs a From: image path")
    path = Path(source).expanduser()
    if not path.exists():
        raise NotFoundError(f"unable to find image {source}: no such file or directory")
    if not (path.is_dir() or path.is_file()):  # a FIFO would block every reader
        raise UsageError(f"unable to use image {source}: not a regular file or directory")
    log.info("Verifying bootstrap image %s", source)
    if stage.get("fingerprints"):
        check_fingerprints(path, stage.get("fingerprints"))
    if path.is_dir():
        copy_tree(path, rootfs, context.runner, context.ownership)
    else:
        unpack_image(path, rootfs, context.runner, context.ownership)
    return Base(name=str(path.resolve()), has_metadata=(rootfs / ".singularity.d").is_dir())


def check_fingerprints(path: Path, header: str) -> None:
    """``Fingerprints: A, B``: the SIF base must carry valid signatures by
    every listed key (checked against the global and local keyrings)."""
    from capsa.integrity.keyring import GLOBAL_KEYRING, Keyring
    from capsa.integrity.verify import KeyMaterial, verify_image
    from capsa.integrity.verify import Keyring as Ring

    wanted = [f.replace(" ", "").upper() for f in header.split(",") if f.strip()]
    if path.is_dir():
        raise SignatureError(f"Fingerprints: {path} is a sandbox, which cannot be signed")
    keys = KeyMaterial(keyrings=(Ring(str(GLOBAL_KEYRING), "GLOBAL"),
                                 Ring(str(Keyring().public_path), "LOCAL")))
    try:
        results = verify_image(path, keys)
    except CapsaError as err:
        raise SignatureError(f"while checking fingerprints of {path}: {err}") from err
    signers = {r.signer.fingerprint.hex().upper() for r in results
               if r.signer is not None and r.error is None}
    missing = [f for f in wanted if f not in signers]
    if missing:
        raise SignatureError(f"image {path} is not signed by the required key(s): "
                             f"{', '.join(missing)}")
    log.info("Image %s is signed by every key of Fingerprints", path)
