"""Adding signatures to a SIF image, as ``sylabs/sif`` ``pkg/integrity`` does.

By default one signature per object group; ``group_ids`` sign chosen
groups and ``object_ids`` sign chosen objects (one signature per group they
fall in).  Each signature is a new Signature object in no group, linked to
the signed group (the link carries the group flag), whose descriptor holds
the hash type of the signature and, for OpenPGP, the signer's primary key
fingerprint.  Its data is the metadata JSON of :mod:`capsa.integrity.digests`,
clear-signed with OpenPGP or wrapped in a DSSE envelope.

Signing never changes the objects it signs, so signing twice adds a second
signature over the same objects, and both verify.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from capsa import report
from capsa.errors import NotFoundError, SignatureError, UsageError
from capsa.integrity.digests import image_metadata

if TYPE_CHECKING:
    from capsa.integrity.dsse import PrivateKey
    from capsa.integrity.pgp import GnuPG
    from capsa.integrity.pgpkeys import PgpKey
    from capsa.sif.image import Descriptor, SifImage

log = report.getLogger("capsa.integrity")


@dataclass(frozen=True, slots=True)
class Signed:
    """One signature's bytes and what its descriptor says of it."""

    data: bytes
    fingerprint: bytes  # 20 bytes, or b"" when there is no OpenPGP entity


class Signer(Protocol):
    def sign(self, payload: bytes) -> Signed: ...


class PgpSigner:
    """Clear-signs with the primary key of an OpenPGP secret key."""

    def __init__(self, key: PgpKey, passphrase: str | None, gpg: GnuPG | None = None) -> None:
        from capsa.integrity.pgp import GnuPG

        self.key = key
        self.passphrase = passphrase
        self.gpg = gpg or GnuPG()

    def sign(self, payload: bytes) -> Signed:
        return Signed(self.gpg.clearsign(payload, self.key, self.passphrase),
                      self.key.fingerprint)


class DsseSigner:
    """Wraps the metadata in a DSSE envelope signed with a PEM key."""

    def __init__(self, key: PrivateKey) -> None:
        self.key = key

    def sign(self, payload: bytes) -> Signed:
        from capsa.integrity.dsse import sign_envelope

        return Signed(sign_envelope(payload, self.key), b"")


def group_ids(image: SifImage) -> list[int]:
    return sorted({d.group_id for d in image.descriptors if d.group_id})


def group_objects(image: SifImage, group: int) -> list[Descriptor]:
    """Every object in *group*, by ID; NotFoundError if there is none."""
    found = sorted((d for d in image.descriptors if d.group_id == group), key=lambda d: d.id)
    if not found:
        raise NotFoundError(f"integrity: group not found: {group}")
    return found


def _plan(image: SifImage, groups: Sequence[int],
          objects: Sequence[int]) -> list[tuple[int, list[Descriptor]]]:
    """(group, objects to sign) for each signature to add, in the reference's order."""
    plan = []
    for group in groups:
        if group == 0:
            raise UsageError("integrity: invalid group ID")
        plan.append((group, group_objects(image, group)))
    if objects:
        by_group: dict[int, list[Descriptor]] = {}
        for ident in objects:
            try:
                d = image.get(ident)
            except NotFoundError:
                raise NotFoundError("integrity: object not found") from None
            if d.group_id == 0:
                raise UsageError("integrity: invalid group ID")
            by_group.setdefault(d.group_id, [])
            if d not in by_group[d.group_id]:
                by_group[d.group_id].append(d)
        plan += sorted(by_group.items())
    if not plan:
        ids = group_ids(image)
        if not ids:
            raise NotFoundError("integrity: no groups found")
        plan = [(g, group_objects(image, g)) for g in ids]
    return plan


def _deterministic(image: SifImage) -> bool:
    from capsa.sif.format import GO_ZERO_TIME

    h = image.header
    return h.id.int == 0 and h.created_at == GO_ZERO_TIME and h.modified_at == GO_ZERO_TIME


def sign_image(path: str | os.PathLike[str], signer: Signer, *,
               groups: Sequence[int] = (), objects: Sequence[int] = ()) -> list[int]:
    """Sign the image at *path*; return the IDs of the new signature objects.

    All signatures are computed before the image is touched, so a failure
    (wrong passphrase, missing object) leaves it exactly as it was.
    """
    from capsa.sif import DataType, HashType, NewObject, SifImage, add_objects

    with SifImage.open(path) as image:
        plan = _plan(image, groups, objects)
        new = []
        for group, descriptors in plan:
            min_id = min(d.id for d in group_objects(image, group))
            payload = image_metadata(image, min_id, descriptors).to_json()
            signed = signer.sign(payload)
            new.append(NewObject(
                data_type=DataType.SIGNATURE, data=signed.data, group_id=0,
                linked_id=group, linked_is_group=True,
                hash_type=HashType.SHA256, fingerprint=signed.fingerprint,
            ))
        deterministic = _deterministic(image)
    try:
        return add_objects(path, new, deterministic=deterministic)
    except OSError as err:
        raise SignatureError(f"integrity: failed to add object: {err.strerror}") from err
