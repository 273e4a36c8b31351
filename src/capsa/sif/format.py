"""SIF constants, enumerations and the on-disk record layouts.

Values and sizes follow sylabs/sif (``pkg/sif``): a 128-byte global header
and a table of 585-byte descriptors, all little-endian and packed.
Enumerations accept values they do not know (as "pseudo members") so that an
image written by a newer tool still opens; they then print as ``Unknown``.
"""

from __future__ import annotations

import os
import struct
from enum import IntEnum
from typing import Any

from capsa.errors import UsageError

MAGIC = b"SIF_MAGIC\x00"
VERSION = b"01\x00"
DEFAULT_LAUNCH_SCRIPT = b"#!/usr/bin/env run-singularity\n"
LAUNCH_SCRIPT_SIZE = 32

HEADER_SIZE = 128
DESCRIPTOR_SIZE = 585
NAME_SIZE = 128
EXTRA_SIZE = 384
ENTITY_SIZE = 256
FINGERPRINT_SIZE = 20

DEFAULT_DESCRIPTORS = 48
DEFAULT_DESCRIPTORS_OFFSET = 4096
PARTITION_ALIGNMENT = 4096
GROUP_MASK = 0xF000_0000
ID_MASK = 0x0FFF_FFFF
DEFAULT_GROUP = 1

# Go's zero time.Time as Unix seconds: what deterministic images store.
GO_ZERO_TIME = -62135596800

# launch[32] magic[10] version[3] arch[3] id[16] ctime mtime free total
# descr_off descr_size data_off data_size
HEADER_STRUCT = struct.Struct("<32s10s3s3s16s8q")
# type used id group link offset size size_with_padding ctime mtime uid gid
# name[128] extra[384]
DESCRIPTOR_STRUCT = struct.Struct("<iBIIIqqqqqqq128s384s")
PARTITION_STRUCT = struct.Struct("<ii3s")
SIGNATURE_STRUCT = struct.Struct("<i256s")
CRYPTO_STRUCT = struct.Struct("<ii")
SBOM_STRUCT = struct.Struct("<i")

assert HEADER_STRUCT.size == HEADER_SIZE
assert DESCRIPTOR_STRUCT.size == DESCRIPTOR_SIZE


class _OpenEnum(IntEnum):
    """An IntEnum that turns unknown values into pseudo members."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value:#x}"
        member._value_ = value
        return member

    @property
    def known(self) -> bool:
        return self._name_ in type(self).__members__


class DataType(_OpenEnum):
    DEFFILE = 0x4001
    ENVVAR = 0x4002
    LABELS = 0x4003
    PARTITION = 0x4004
    SIGNATURE = 0x4005
    GENERIC_JSON = 0x4006
    GENERIC = 0x4007
    CRYPTO_MESSAGE = 0x4008
    SBOM = 0x4009
    OCI_ROOT_INDEX = 0x400A
    OCI_BLOB = 0x400B


class FSType(_OpenEnum):
    SQUASHFS = 1
    EXT3 = 2
    IMMUOBJ = 3
    RAW = 4
    ENCRYPTED_SQUASHFS = 5


class PartType(_OpenEnum):
    SYSTEM = 1
    PRIMSYS = 2
    DATA = 3
    OVERLAY = 4


class HashType(_OpenEnum):
    SHA256 = 1
    SHA384 = 2
    SHA512 = 3
    BLAKE2S = 4
    BLAKE2B = 5


class FormatType(_OpenEnum):
    OPENPGP = 1
    PEM = 2


class MessageType(_OpenEnum):
    CLEARSIGN = 0x100
    RSA_OAEP = 0x200


# SBOM formats: stored as an int32 in the descriptor, named as siftool does.
SBOM_FORMATS: dict[int, str] = {
    1: "cyclonedx-json",
    2: "cyclonedx-xml",
    3: "github-json",
    4: "spdx-json",
    5: "spdx-rdf",
    6: "spdx-tag-value",
    7: "spdx-yaml",
    8: "syft-json",
}
_SBOM_CODES = {name: code for code, name in SBOM_FORMATS.items()}
_SBOM_CODES["github"] = 3


def sbom_format_name(code: int) -> str:
    return SBOM_FORMATS.get(code, "unknown")


def sbom_format_code(name: str) -> int:
    try:
        return _SBOM_CODES[name]
    except KeyError:
        raise UsageError(f"invalid SBOM format: {name}") from None


# SIF architecture codes (header and partition descriptors) by GOARCH name.
ARCH_CODES: dict[str, str] = {
    "386": "01",
    "amd64": "02",
    "arm": "03",
    "arm64": "04",
    "ppc64": "05",
    "ppc64le": "06",
    "mips": "07",
    "mipsle": "08",
    "mips64": "09",
    "mips64le": "10",
    "s390x": "11",
    "riscv64": "12",
    "loong64": "13",
}
_ARCH_NAMES = {code: name for name, code in ARCH_CODES.items()}
ARCH_UNKNOWN = "00"

# uname -m -> GOARCH
_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips": "mips",
    "mips64": "mips64",
}


def sif_arch(goarch: str) -> str:
    """The SIF code of a GOARCH name (``"amd64"`` -> ``"02"``)."""
    try:
        return ARCH_CODES[goarch]
    except KeyError:
        raise UsageError(f"unknown architecture: {goarch}") from None


def go_arch(code: str) -> str:
    """The GOARCH name of a SIF code (``"02"`` -> ``"amd64"``); ``"unknown"``."""
    return _ARCH_NAMES.get(code, "unknown")


def host_goarch() -> str:
    """The GOARCH name of this machine."""
    machine = os.uname().machine
    if machine.startswith("arm") and machine not in _MACHINES:
        return "arm"
    return _MACHINES.get(machine, machine)


def arch_code(arch: str) -> str:
    """Accept a GOARCH name or a SIF code; return the SIF code."""
    if arch in _ARCH_NAMES:
        return arch
    return sif_arch(arch)
