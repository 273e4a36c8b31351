"""OpenPGP keys as bytes: packet framing, ASCII armor, fingerprints.

This is not cryptography: it only splits a keyring (a concatenation of
transferable public or secret keys, as Apptainer keeps ``pgp-public`` and
``pgp-secret``) into keys and reads what ``key list`` shows (fingerprint,
user IDs, creation time, key size) and whether a secret key is protected by
a passphrase.  Signing and checking signatures is :mod:`capsa.integrity.pgp`.

Keyrings are hostile input: every length is checked, and a truncated or
malformed keyring raises :class:`FormatError` rather than yielding a partial
list.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from capsa.errors import FormatError

TAG_SIGNATURE = 2
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_USER_ID = 13
TAG_PUBLIC_SUBKEY = 14

_PRIMARY_TAGS = (TAG_SECRET_KEY, TAG_PUBLIC_KEY)
_SECRET_TAGS = (TAG_SECRET_KEY, TAG_SECRET_SUBKEY)
_RSA_ALGOS = (1, 2, 3)
_ECC_BITS = {  # curve OID (DER body) -> key size as go-crypto reports it
    bytes.fromhex("2a8648ce3d030107"): 256,
    bytes.fromhex("2b81040022"): 384,
    bytes.fromhex("2b81040023"): 521,
    bytes.fromhex("2b06010401da470f01"): 256,  # Ed25519
    bytes.fromhex("2b060104019755010501"): 256,  # Curve25519
}

ARMOR_PUBLIC = "PGP PUBLIC KEY BLOCK"
ARMOR_PRIVATE = "PGP PRIVATE KEY BLOCK"


@dataclass(frozen=True, slots=True)
class Packet:
    tag: int
    body: bytes
    raw: bytes  # header and body, exactly as read


@dataclass(frozen=True, slots=True)
class PgpKey:
    """One transferable key (a primary key and what belongs to it)."""

    fingerprint: bytes  # 20 bytes (v4)
    created: int  # seconds since the epoch
    bits: int
    user_ids: tuple[str, ...]
    secret: bool
    encrypted: bool  # secret key material protected by a passphrase
    raw: bytes  # every packet of the key, binary

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex().upper()

    @property
    def key_id(self) -> str:
        return self.fingerprint[-8:].hex().upper()

    @property
    def primary_user_id(self) -> str:
        return self.user_ids[0] if self.user_ids else ""

    def public_part(self) -> bytes:
        """The key without secret material (secret packets made public)."""
        out = bytearray()
        for packet in iter_packets(self.raw):
            if packet.tag in _SECRET_TAGS:
                public_tag = TAG_PUBLIC_KEY if packet.tag == TAG_SECRET_KEY else TAG_PUBLIC_SUBKEY
                out += frame(public_tag, _public_fields(packet.body))
            else:
                out += packet.raw
        return bytes(out)


def frame(tag: int, body: bytes) -> bytes:
    """A new-format packet header and *body*."""
    n = len(body)
    if n < 192:
        header = bytes([n])
    elif n < 8384:
        n -= 192
        header = bytes([(n >> 8) + 192, n & 0xFF])
    else:
        header = b"\xff" + struct.pack(">I", n)
    return bytes([0xC0 | tag]) + header + body


def _need(data: bytes, pos: int, n: int) -> None:
    if n < 0 or pos + n > len(data):
        raise FormatError("OpenPGP data is truncated")


def _read_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, body offset, body length) of the packet at *pos*."""
    _need(data, pos, 1)
    ctb = data[pos]
    if not ctb & 0x80:
        raise FormatError(f"not OpenPGP data (byte {ctb:#04x} at offset {pos})")
    if ctb & 0x40:  # new format
        tag = ctb & 0x3F
        _need(data, pos + 1, 1)
        first = data[pos + 1]
        if first < 192:
            return tag, pos + 2, first
        if first < 224:
            _need(data, pos + 2, 1)
            return tag, pos + 3, ((first - 192) << 8) + data[pos + 2] + 192
        if first == 255:
            _need(data, pos + 2, 4)
            return tag, pos + 6, int.from_bytes(data[pos + 2 : pos + 6], "big")
        raise FormatError("partial-length OpenPGP packets are not valid in a keyring")
    tag, kind = (ctb >> 2) & 0x0F, ctb & 0x03
    if kind == 3:
        raise FormatError("indeterminate-length OpenPGP packets are not valid in a keyring")
    size = (1, 2, 4)[kind]
    _need(data, pos + 1, size)
    length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    return tag, pos + 1 + size, length


def iter_packets(data: bytes) -> list[Packet]:
    packets = []
    pos = 0
    while pos < len(data):
        tag, start, length = _read_header(data, pos)
        _need(data, start, length)
        packets.append(Packet(tag, data[start : start + length], data[pos : start + length]))
        pos = start + length
    return packets


def _mpi_end(body: bytes, pos: int) -> int:
    _need(body, pos, 2)
    bits = int.from_bytes(body[pos : pos + 2], "big")
    end = pos + 2 + (bits + 7) // 8
    _need(body, pos, end - pos)
    return end


def _public_layout(body: bytes) -> tuple[int, int]:
    """(end of the public fields, key size in bits) of a v4 key packet body."""
    _need(body, 0, 6)
    if body[0] != 4:
        raise FormatError(f"unsupported OpenPGP key version {body[0]}")
    algo, pos = body[5], 6
    if algo in _RSA_ALGOS or algo in (16, 17):  # RSA, Elgamal, DSA: MPIs only
        count = {16: 3, 17: 4}.get(algo, 2)
        bits = int.from_bytes(body[pos : pos + 2], "big")
        for _ in range(count):
            pos = _mpi_end(body, pos)
        return pos, bits
    if algo in (18, 19, 22):  # ECDH, ECDSA, EdDSA: curve OID then a point
        _need(body, pos, 1)
        oid = body[pos + 1 : pos + 1 + body[pos]]
        _need(body, pos + 1, body[pos])
        pos = _mpi_end(body, pos + 1 + body[pos])
        if algo == 18:  # KDF parameters
            _need(body, pos, 1)
            _need(body, pos + 1, body[pos])
            pos += 1 + body[pos]
        return pos, _ECC_BITS.get(oid, 0)
    raise FormatError(f"unsupported OpenPGP public key algorithm {algo}")


def _public_fields(body: bytes) -> bytes:
    return body[: _public_layout(body)[0]]


def fingerprint_of(body: bytes) -> bytes:
    """The v4 fingerprint of a (public or secret) key packet body."""
    public = _public_fields(body)
    return hashlib.sha1(b"\x99" + struct.pack(">H", len(public)) + public).digest()


def _is_protected(body: bytes) -> bool:
    end, _ = _public_layout(body)
    _need(body, end, 1)
    return body[end] != 0


def _check_structure(packets: list[Packet]) -> None:
    """A transferable key (RFC 4880 11.1): a user ID, and every user ID and
    subkey followed by its signature.  A keyring cut short between packets
    fails here rather than passing as a smaller key."""
    if not any(p.tag == TAG_USER_ID for p in packets):
        raise FormatError("OpenPGP key has no user ID (truncated keyring?)")
    for packet, following in zip(packets, [*packets[1:], None], strict=True):
        needs_signature = packet.tag in (TAG_USER_ID, TAG_PUBLIC_SUBKEY, TAG_SECRET_SUBKEY)
        if needs_signature and (following is None or following.tag != TAG_SIGNATURE):
            raise FormatError("OpenPGP key is incomplete: a user ID or subkey has no "
                              "signature (truncated keyring?)")


def _make_key(packets: list[Packet]) -> PgpKey:
    _check_structure(packets)
    primary = packets[0]
    end, bits = _public_layout(primary.body)
    del end
    secret = primary.tag == TAG_SECRET_KEY
    uids = tuple(p.body.decode("utf-8", errors="replace") for p in packets if p.tag == TAG_USER_ID)
    return PgpKey(
        fingerprint=fingerprint_of(primary.body),
        created=int.from_bytes(primary.body[1:5], "big"),
        bits=bits,
        user_ids=uids,
        secret=secret,
        encrypted=secret and _is_protected(primary.body),
        raw=b"".join(p.raw for p in packets),
    )


def split_keys(data: bytes) -> list[PgpKey]:
    """Every key in *data* (binary or ASCII-armored); FormatError if malformed."""
    data = dearmor(data) if is_armored(data) else data
    groups: list[list[Packet]] = []
    for packet in iter_packets(data):
        if packet.tag in _PRIMARY_TAGS:
            groups.append([packet])
        elif not groups:
            raise FormatError("OpenPGP data does not start with a key")
        else:
            groups[-1].append(packet)
    return [_make_key(group) for group in groups]


def is_armored(data: bytes) -> bool:
    return data.lstrip()[:15] == b"-----BEGIN PGP "


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor(data: bytes, kind: str) -> bytes:
    text = base64.b64encode(data).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    crc = base64.b64encode(struct.pack(">I", _crc24(data))[1:]).decode()
    body = "\n".join(lines)
    return f"-----BEGIN {kind}-----\n\n{body}\n={crc}\n-----END {kind}-----\n".encode()


def dearmor(data: bytes) -> bytes:
    """The binary content of every armored block in *data*, concatenated."""
    out = bytearray()
    lines = data.decode("ascii", errors="replace").splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("-----BEGIN PGP "):
            i += 1
            continue
        i += 1
        while i < len(lines) and lines[i].strip():  # armor headers
            i += 1
        chunks, crc = [], None
        while i < len(lines) and not lines[i].startswith("-----END PGP "):
            line = lines[i].strip()
            if line.startswith("="):
                crc = line[1:]
            elif line:
                chunks.append(line)
            i += 1
        if i >= len(lines):
            raise FormatError("ASCII-armored OpenPGP data is truncated")
        out += _decode_block("".join(chunks), crc)
        i += 1
    if not out:
        raise FormatError("no ASCII-armored OpenPGP data found")
    return bytes(out)


def _decode_block(text: str, crc: str | None) -> bytes:
    try:
        block = base64.b64decode(text, validate=True)
        want = base64.b64decode(crc, validate=True) if crc else None
    except ValueError as err:
        raise FormatError("ASCII-armored OpenPGP data is corrupt") from err
    if want is not None and struct.pack(">I", _crc24(block))[1:] != want:
        raise FormatError("ASCII-armored OpenPGP data fails its checksum")
    return block


def split_user_id(uid: str) -> tuple[str, str, str]:
    """(name, comment, email) of ``Name (comment) <email>``, as go-crypto parses it."""
    name, comment, email = uid, "", ""
    if uid.endswith(">") and "<" in uid:
        name, email = uid[:-1].rsplit("<", 1)
        name = name.rstrip()
    if name.endswith(")") and "(" in name:
        name, comment = name[:-1].rsplit("(", 1)
        name = name.rstrip()
    return name.strip(), comment, email
