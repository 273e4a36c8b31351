"""The text ``siftool`` prints for ``header``, ``list`` and ``info``.

Byte-for-byte what sylabs/sif's siftool writes, including Go's
``text/tabwriter`` alignment, its ``time.Time`` formatting and its rounding
of sizes, so that tests can compare with its golden files.
"""

from __future__ import annotations

from capsa.errors import SifFormatError
from capsa.sif.format import (
    GO_ZERO_TIME,
    DataType,
    FormatType,
    FSType,
    HashType,
    MessageType,
    PartType,
    go_arch,
)
from capsa.sif.image import Descriptor, Header

DATA_TYPE_NAMES = {
    DataType.DEFFILE: "Def.FILE",
    DataType.ENVVAR: "Env.Vars",
    DataType.LABELS: "JSON.Labels",
    DataType.PARTITION: "FS",
    DataType.SIGNATURE: "Signature",
    DataType.GENERIC_JSON: "JSON.Generic",
    DataType.GENERIC: "Generic/Raw",
    DataType.CRYPTO_MESSAGE: "Cryptographic Message",
    DataType.SBOM: "SBOM",
    DataType.OCI_ROOT_INDEX: "OCI.RootIndex",
    DataType.OCI_BLOB: "OCI.Blob",
}
FS_NAMES = {
    FSType.SQUASHFS: "Squashfs",
    FSType.EXT3: "Ext3",
    FSType.IMMUOBJ: "Archive",
    FSType.RAW: "Raw",
    FSType.ENCRYPTED_SQUASHFS: "Encrypted squashfs",
}
PART_NAMES = {
    PartType.SYSTEM: "System",
    PartType.PRIMSYS: "*System",
    PartType.DATA: "Data",
    PartType.OVERLAY: "Overlay",
}
# Go's crypto.Hash names; an unknown hash is an error in the reference.
HASH_NAMES = {
    HashType.SHA256: "SHA-256",
    HashType.SHA384: "SHA-384",
    HashType.SHA512: "SHA-512",
    HashType.BLAKE2S: "BLAKE2s-256",
    HashType.BLAKE2B: "BLAKE2b-256",
}
FORMAT_NAMES = {FormatType.OPENPGP: "OpenPGP", FormatType.PEM: "PEM"}
MESSAGE_NAMES = {MessageType.CLEARSIGN: "Clear Signature", MessageType.RSA_OAEP: "RSA-OAEP"}

RULE = "-" * 78


def type_name(t: DataType) -> str:
    return DATA_TYPE_NAMES.get(t, "Unknown")


def hash_name(d: Descriptor) -> str:
    hash_type, _ = d.signature_info()
    try:
        return HASH_NAMES[hash_type]
    except KeyError:
        raise SifFormatError(f"object {d.id}: hash algorithm unsupported") from None


def readable_size(size: int) -> str:
    """Go siftool's ``readableSize``: ``27 KiB``, ``847 B``."""
    if -1024 < size < 1024:
        return f"{size} B"
    div, exp = 1024, 0
    n = int(size / 1024)
    while n <= -1024 or n >= 1024:
        div *= 1024
        exp += 1
        n = int(n / 1024)
    value = size / div
    rounded = int(abs(value) + 0.5) * (1 if value >= 0 else -1)  # math.Round: half away
    return f"{rounded} {'KMGTPE'[exp]}iB"


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a count of days since 1970-01-01 (proleptic Gregorian)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def go_time(seconds: int) -> str:
    """Go's ``time.Unix(s, 0).UTC().String()``: ``2020-06-30 00:01:56 +0000 UTC``."""
    days, rest = divmod(seconds, 86400)
    year, month, day = _civil(days)
    sign = "-" if year < 0 else ""
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{sign}{abs(year):04d}-{month:02d}-{day:02d} {clock} +0000 UTC"


def tabwrite(text: str, padding: int) -> str:
    """Go's ``tabwriter.NewWriter(w, 0, 0, padding, ' ', 0)`` applied to *text*."""
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    _format(lines, 0, len(lines), [], padding, out)
    return "\n".join(out)


def _format(lines: list[list[str]], start: int, stop: int, widths: list[int],
            padding: int, out: list[str]) -> None:
    column = len(widths)
    this = start
    while this < stop:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write_lines(lines, start, this, widths, out)
        start = this
        width = 0
        while this < stop and column < len(lines[this]) - 1:
            width = max(width, len(lines[this][column]) + padding)
            this += 1
        _format(lines, start, this, [*widths, width], padding, out)
        start = this
    _write_lines(lines, start, stop, widths, out)


def _write_lines(lines: list[list[str]], start: int, stop: int, widths: list[int],
                 out: list[str]) -> None:
    for cells in lines[start:stop]:
        text = []
        for j, cell in enumerate(cells):
            text.append(cell)
            if j < len(widths) and j < len(cells) - 1:
                text.append(" " * (widths[j] - len(cell)))
        out.append("".join(text))


def header_text(h: Header) -> str:
    rows = []
    script = h.launch_script.decode("utf-8", "surrogateescape")
    if script:
        rows.append(f"Launch Script:\t{script.removesuffix(chr(10))}")
    rows.append(f"Version:\t{h.version}")
    if (arch := go_arch(h.arch)) != "unknown":
        rows.append(f"Primary Architecture:\t{arch}")
    if any(h.id_bytes):
        rows.append(f"ID:\t{h.id}")
    if h.created_at != GO_ZERO_TIME:
        rows.append(f"Created At:\t{go_time(h.created_at)}")
    if h.modified_at != GO_ZERO_TIME:
        rows.append(f"Modified At:\t{go_time(h.modified_at)}")
    rows += [
        f"Descriptors Free:\t{h.descriptors_free}",
        f"Descriptors Total:\t{h.descriptors_total}",
        f"Descriptors Offset:\t{h.descriptors_offset}",
        f"Descriptors Size:\t{readable_size(h.descriptors_size)}",
        f"Data Offset:\t{h.data_offset}",
        f"Data Size:\t{readable_size(h.data_size)}",
    ]
    return tabwrite("\n".join(rows) + "\n", 1)


def list_text(descriptors: list[Descriptor]) -> str:
    out = [RULE + "\n", f"{'ID':<4} {'|GROUP':<8} {'|LINK':<8} "
           f"{'|SIF POSITION (start-end)':<26} |TYPE\n", RULE + "\n"]
    out += [_list_row(d) for d in descriptors]
    return "".join(out)


def _list_row(d: Descriptor) -> str:
    group = "NONE" if d.group_id == 0 else str(d.group_id)
    if d.linked_id == 0:
        link = f"|{'NONE':<7} "
    elif d.linked_is_group:
        link = f"|{d.linked_id:<3} (G) "
    else:
        link = f"|{d.linked_id:<7} "
    position = f"|{d.offset}-{d.offset + d.size} "
    row = f"{d.id:<4} |{group:<7} {link}{position:<26} "
    try:
        return row + f"|{_list_type(d)}\n"
    except SifFormatError:
        return row  # the reference prints nothing more (not even a newline)


def _list_type(d: Descriptor) -> str:
    name = type_name(d.data_type)
    if d.data_type == DataType.PARTITION:
        fs, part, arch = d.partition_info()
        return (f"{name} ({FS_NAMES.get(fs, 'Unknown')}/{PART_NAMES.get(part, 'Unknown')}/"
                f"{go_arch(arch)})")
    if d.data_type == DataType.SIGNATURE:
        return f"{name} ({hash_name(d)})"
    if d.data_type == DataType.CRYPTO_MESSAGE:
        fmt, msg = d.crypto_info()
        return (f"{name} ({FORMAT_NAMES.get(fmt, 'Unknown')}/"
                f"{MESSAGE_NAMES.get(msg, 'Unknown')})")
    if d.data_type == DataType.SBOM:
        return f"{name} ({d.sbom_format()})"
    return name


def info_text(d: Descriptor) -> str:
    rows = [
        f"\tData Type:\t{type_name(d.data_type)}",
        f"\tID:\t{d.id}",
        f"\tGroup ID:\t{d.group_id or 'NONE'}",
        f"\tLinked ID:\t{_linked(d)}",
        f"\tOffset:\t{d.offset}",
        f"\tSize:\t{d.size}",
    ]
    if d.created_at != GO_ZERO_TIME:
        rows.append(f"\tCreated At:\t{go_time(d.created_at)}")
    if d.modified_at != GO_ZERO_TIME:
        rows.append(f"\tModified At:\t{go_time(d.modified_at)}")
    if d.name:
        rows.append(f"\tName:\t{d.name}")
    rows += _info_extra(d)
    return tabwrite("\n".join(rows) + "\n", 2)


def _linked(d: Descriptor) -> str:
    if d.linked_id == 0:
        return "NONE"
    return f"{d.linked_id} (G)" if d.linked_is_group else str(d.linked_id)


def _info_extra(d: Descriptor) -> list[str]:
    t = d.data_type
    if t == DataType.PARTITION:
        fs, part, arch = d.partition_info()
        return [f"\tFilesystem Type:\t{FS_NAMES.get(fs, 'Unknown')}",
                f"\tPartition Type:\t{PART_NAMES.get(part, 'Unknown')}",
                f"\tArchitecture:\t{go_arch(arch)}"]
    if t == DataType.SIGNATURE:
        rows = [f"\tHash Type:\t{hash_name(d)}"]
        _, fingerprint = d.signature_info()
        if any(fingerprint):
            rows.append(f"\tEntity:\t{fingerprint.hex().upper()}")
        return rows
    if t == DataType.CRYPTO_MESSAGE:
        fmt, msg = d.crypto_info()
        return [f"\tFormat Type:\t{FORMAT_NAMES.get(fmt, 'Unknown')}",
                f"\tMessage Type:\t{MESSAGE_NAMES.get(msg, 'Unknown')}"]
    if t == DataType.SBOM:
        return [f"\tFormat:\t{d.sbom_format()}"]
    if t in (DataType.OCI_BLOB, DataType.OCI_ROOT_INDEX):
        return [f"\tDigest:\t{d.oci_digest()}"]
    return []
