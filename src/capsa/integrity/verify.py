"""Checking the signatures of a SIF image, as ``sylabs/sif`` ``pkg/integrity`` does.

By default every object group is checked: each must carry at least one
(non-legacy) signature, *every* signature linked to it must verify, and the
signed objects must be exactly the objects of the group.  ``objects``
checks single objects (the signature may cover more); ``groups`` chosen
groups.  With ``legacy`` only old per-object or per-group signatures
(``SIFHASH:`` clear-signed digests of the data alone) are considered; they
protect neither the header nor the descriptors.

Key material: OpenPGP keyrings (the site's and the user's) and/or PEM
public keys for DSSE envelopes.  Each checked signature is reported through
*callback* (as Apptainer prints it) before the first failure is raised as a
:class:`SignatureError` whose message is the reference's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from capsa.errors import CapsaError, NotFoundError, SignatureError, UsageError
from capsa.integrity import digests
from capsa.integrity.digests import IntegrityError
from capsa.integrity.sign import group_ids, group_objects

if TYPE_CHECKING:
    from capsa.integrity.dsse import PublicKey
    from capsa.integrity.pgp import GnuPG
    from capsa.integrity.pgpkeys import PgpKey
    from capsa.sif import DataType
    from capsa.sif.image import Descriptor, SifImage

LEGACY_PREFIX = b"SIFHASH:\n"
_LEGACY_HASHES = {1: "sha256", 2: "sha384", 3: "sha512"}


@dataclass(frozen=True, slots=True)
class Keyring:
    """An OpenPGP keyring file and where it comes from (``LOCAL``, ``GLOBAL``)."""

    path: str
    source: str


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    keyrings: tuple[Keyring, ...] = ()
    pem_keys: tuple[PublicKey, ...] = ()


@dataclass(frozen=True, slots=True)
class SignerInfo:
    name: str  # the key's primary user ID; "" when unknown
    fingerprint: bytes  # 20 bytes; b"" for a PEM key
    source: str  # LOCAL, GLOBAL or REMOTE; "" for a PEM key


@dataclass(slots=True)
class VerifyResult:
    signature: Descriptor
    verified: list[Descriptor] = field(default_factory=list)
    signer: SignerInfo | None = None
    error: str | None = None
    failed_object: Descriptor | None = None


Callback = Callable[[VerifyResult], None]


def _signature_data(image: SifImage, sig: Descriptor) -> bytes:
    if sig.size > 16 << 20:
        raise SignatureError(f"signature object {sig.id} is implausibly large")
    return image.read(sig)


def _is_legacy(data: bytes) -> bool:
    from capsa.integrity.pgp import clearsigned_text, is_clearsigned

    if not is_clearsigned(data):
        return False
    try:
        return clearsigned_text(data).startswith(LEGACY_PREFIX)
    except SignatureError:
        return False


class _Context:
    """The image, the key material, and the messages they produce."""

    def __init__(self, image: SifImage, keys: KeyMaterial, gpg: GnuPG | None) -> None:
        self.image = image
        self.keys = keys
        self._gpg = gpg
        self._pgp_keys: list[tuple[PgpKey, str]] | None = None

    @property
    def gpg(self) -> GnuPG:
        if self._gpg is None:
            from capsa.integrity.pgp import GnuPG

            self._gpg = GnuPG()
        return self._gpg

    def pgp_keys(self) -> list[tuple[PgpKey, str]]:
        if self._pgp_keys is None:
            from capsa.integrity.keyring import read_keyring

            self._pgp_keys = [(k, ring.source) for ring in self.keys.keyrings
                              for k in read_keyring(ring.path)]
        return self._pgp_keys

    def signer(self, fingerprint: bytes) -> SignerInfo:
        for key, source in self.pgp_keys():
            if key.fingerprint == fingerprint:
                return SignerInfo(key.primary_user_id, fingerprint, source)
        return SignerInfo("", fingerprint, "REMOTE")

    def open_message(self, sig: Descriptor, data: bytes,
                     result: VerifyResult) -> tuple[bytes, str]:
        """(the signed message, its hash name), checked with the matching key material."""
        from capsa.integrity.dsse import is_envelope
        from capsa.integrity.pgp import is_clearsigned

        hash_type, _ = _signature_info(sig)
        if is_envelope(data):
            if not self.keys.pem_keys:
                raise SignatureError("integrity: key material not provided for DSSE "
                                     "envelope signature")
            from capsa.integrity.dsse import verify_envelope

            name = _HASH_NAMES.get(hash_type, "SHA256")
            try:
                return verify_envelope(data, list(self.keys.pem_keys), name), name
            except SignatureError as err:
                raise _not_valid(sig, str(err)) from None
        if is_clearsigned(data):
            if not self.keys.keyrings:
                raise SignatureError("integrity: key material not provided for PGP "
                                     "clear-sign signature")
            ring = b"".join(key.public_part() for key, _ in self.pgp_keys())
            if not ring:
                raise _not_valid(sig, "openpgp: signature made by unknown entity")
            try:
                checked = self.gpg.check_clearsigned(data, ring)
            except SignatureError as err:
                raise _not_valid(sig, str(err)) from None
            result.signer = self.signer(checked.fingerprint)
            return checked.plaintext, checked.hash_name
        raise SignatureError("integrity: signature format not recognized")


_HASH_NAMES = {1: "SHA256", 2: "SHA384", 3: "SHA512"}


def _signature_info(sig: Descriptor) -> tuple[int, bytes]:
    try:
        hash_type, fingerprint = sig.signature_info()
    except (CapsaError, ValueError) as err:
        raise SignatureError(f"signature object {sig.id}: {err}") from None
    if int(hash_type) not in _HASH_NAMES and int(hash_type) not in (4, 5):
        raise SignatureError("hash algorithm unsupported")
    fingerprint = bytes(fingerprint[:20])
    return int(hash_type), b"" if fingerprint == bytes(20) else fingerprint


def _not_valid(sig: Descriptor, reason: str) -> SignatureError:
    return SignatureError(f"signature object {sig.id} not valid: {reason}")


def _check_entity(sig: Descriptor, result: VerifyResult) -> None:
    _, fingerprint = _signature_info(sig)
    if result.signer is not None and result.signer.fingerprint != fingerprint:
        raise SignatureError("fingerprint in descriptor does not correspond to signing entity")


class _GroupTask:
    """Non-legacy signatures of one group, over all its objects or some."""

    def __init__(self, image: SifImage, group: int, subset: Sequence[Descriptor] = ()) -> None:
        self.group = group
        self.objects = list(subset) or group_objects(image, group)
        self.subset_ok = bool(subset)

    def signatures(self, ctx: _Context) -> list[Descriptor]:
        sigs = [s for s in ctx.image.select(data_type=_signature_type(),
                                            linked_id=self.group, linked_is_group=True)
                if not _is_legacy(_signature_data(ctx.image, s))]
        if not sigs:
            raise SignatureError(f"signature not found for object group {self.group}")
        return sigs

    def verify(self, ctx: _Context, sig: Descriptor, result: VerifyResult) -> None:
        message, _ = ctx.open_message(sig, _signature_data(ctx.image, sig), result)
        try:
            metadata = digests.parse_metadata(message)
        except SignatureError as err:
            raise _not_valid(sig, str(err)) from None
        min_id = min(d.id for d in group_objects(ctx.image, self.group))
        _check_entity(sig, result)
        if not self.subset_ok:
            digests.check_ids(metadata, min_id, self.objects)
        result.verified = digests.check_metadata(ctx.image, metadata, min_id, self.objects)


class _LegacyTask:
    """Legacy signatures of one object, or of a whole group's data."""

    def __init__(self, image: SifImage, *, group: int = 0, obj: Descriptor | None = None) -> None:
        self.group = group
        self.obj = obj
        self.objects = [obj] if obj is not None else group_objects(image, group)

    def signatures(self, ctx: _Context) -> list[Descriptor]:
        if self.obj is not None:
            sigs = ctx.image.select(data_type=_signature_type(), linked_id=self.obj.id,
                                    linked_is_group=False)
            if not sigs:
                raise SignatureError(f"signature not found for object {self.obj.id}")
            return sigs
        sigs = [s for s in ctx.image.select(data_type=_signature_type(),
                                            linked_id=self.group, linked_is_group=True)
                if _is_legacy(_signature_data(ctx.image, s))]
        if not sigs:
            raise SignatureError(f"signature not found for object group {self.group}")
        return sigs

    def verify(self, ctx: _Context, sig: Descriptor, result: VerifyResult) -> None:
        message, _ = ctx.open_message(sig, _signature_data(ctx.image, sig), result)
        hash_type, _ = _signature_info(sig)
        _check_entity(sig, result)
        algorithm = _LEGACY_HASHES.get(hash_type)
        if algorithm is None:
            raise SignatureError("hash algorithm unsupported")
        text = message.removeprefix(LEGACY_PREFIX).removesuffix(b"\n")
        try:
            want = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as err:
            raise SignatureError(f"encoding/hex: invalid legacy digest: {err}") from None
        if len(want) != hashlib.new(algorithm).digest_size:
            raise SignatureError("digest malformed")
        hasher = hashlib.new(algorithm)
        for d in self.objects:
            digests.feed_range(hasher, ctx.image.fileno(), d.offset, d.size)
        if hasher.digest() != want:
            ident = self.obj.id if self.obj is not None else 0
            message_text = ("data object integrity compromised" if not ident
                            else f"data object integrity compromised: {ident}")
            raise IntegrityError(message_text, object_id=ident)
        result.verified = list(self.objects)


def _signature_type() -> DataType:
    from capsa.sif import DataType

    return DataType.SIGNATURE


_Task = _GroupTask | _LegacyTask


def _tasks(image: SifImage, groups: Sequence[int], objects: Sequence[int], legacy: bool,
           all_objects: bool) -> list[_Task]:
    groups = sorted(set(groups))
    objects = sorted(set(objects))
    if any(g == 0 for g in groups):
        raise UsageError("integrity: invalid group ID")
    if any(o == 0 for o in objects):
        raise UsageError("integrity: invalid object ID")
    if legacy and all_objects:
        grouped = [d.id for d in image.descriptors
                   if d.data_type != _signature_type() and d.group_id]
        objects = sorted(set(objects) | set(grouped))
    elif legacy and not groups and not objects:
        try:
            objects = [image.primary_partition().id]
        except NotFoundError:
            raise NotFoundError("integrity: primary system partition not found") from None
    if not groups and not objects:
        groups = group_ids(image)
        if not groups:
            raise NotFoundError("integrity: no groups found")
    tasks: list[_Task] = []
    for g in groups:
        tasks.append(_LegacyTask(image, group=g) if legacy else _GroupTask(image, g))
    for ident in objects:
        d = _object(image, ident)
        tasks.append(_LegacyTask(image, obj=d) if legacy else _GroupTask(image, d.group_id, [d]))
    return tasks


def _object(image: SifImage, ident: int) -> Descriptor:
    try:
        return image.get(ident)
    except NotFoundError:
        raise NotFoundError("integrity: object not found") from None


def _check_grouped(image: SifImage) -> None:
    for d in image.descriptors:
        if d.group_id == 0 and d.data_type != _signature_type():
            raise SignatureError(
                "integrity: non-signature object not associated with object group")


def verify_image(path: str | os.PathLike[str], keys: KeyMaterial, *,
                 groups: Sequence[int] = (), objects: Sequence[int] = (),
                 legacy: bool = False, all_objects: bool = False,
                 callback: Callback | None = None, gpg: GnuPG | None = None,
                 fd: int | None = None) -> list[VerifyResult]:
    """Verify the image at *path* (or, with *fd*, the image open there, which
    *path* then only names); the result of each signature checked.

    Raises :class:`SignatureError` (the first failure, after reporting it
    through *callback*), or NotFoundError/UsageError for a bad selection.
    """
    from capsa.sif import SifImage

    opened = SifImage.open(path) if fd is None else SifImage.from_fd(fd, os.fspath(path))
    with opened as image:
        ctx = _Context(image, keys, gpg)
        tasks = _tasks(image, groups, objects, legacy, all_objects)
        _check_grouped(image)
        results = []
        for task in tasks:
            try:
                sigs = task.signatures(ctx)
            except SignatureError as err:
                raise SignatureError(f"integrity: {err}") from None
            for sig in sigs:
                results.append(_run(ctx, task, sig, callback))
        return results


def _run(ctx: _Context, task: _Task, sig: Descriptor, callback: Callback | None) -> VerifyResult:
    result = VerifyResult(sig)
    try:
        task.verify(ctx, sig, result)
    except IntegrityError as err:
        result.verified = err.verified
        result.error = str(err)
        if err.object_id and str(err).startswith("data object integrity"):
            found = [d for d in ctx.image.descriptors if d.id == err.object_id]
            result.failed_object = found[0] if found else None
    except SignatureError as err:
        if str(err).startswith("integrity: "):
            raise
        result.error = str(err)
    if callback is not None:
        callback(result)
    if result.error is not None:
        raise SignatureError(f"integrity: {result.error}")
    return result


def key_material(pem_path: str | None = None, keyring: str | None = None,
                 global_keyring: str | None = None) -> KeyMaterial:
    """The keys ``verify`` trusts: a PEM key, or an OpenPGP *keyring*, or
    the site's (*global_keyring*) and the caller's keyrings."""
    from capsa.integrity.keyring import GLOBAL_KEYRING
    from capsa.integrity.keyring import Keyring as Keyrings

    if pem_path is not None:
        from capsa.integrity.dsse import load_public_key

        return KeyMaterial(pem_keys=(load_public_key(pem_path),))
    if keyring is not None:
        return KeyMaterial(keyrings=(Keyring(keyring, "LOCAL"),))
    local = Keyrings().public_path
    site = global_keyring or str(GLOBAL_KEYRING)
    return KeyMaterial(keyrings=(Keyring(site, "GLOBAL"), Keyring(str(local), "LOCAL")))


def verify_with(image: str, *, key: str | None = None, keyring: str | None = None,
                global_keyring: str | None = None, legacy: bool = False
                ) -> list[VerifyResult]:
    """Every signature of *image* checked with :func:`key_material`'s keys;
    :class:`~capsa.errors.SignatureError` if one does not hold."""
    found: list[VerifyResult] = []
    verify_image(image, key_material(key, keyring, global_keyring), legacy=legacy,
                 callback=found.append)
    return found
