"""``capsa sif``: inspect and edit SIF images, as ``siftool`` (and ``apptainer sif``) do.

Sub-commands, arguments, flags and printed text follow sylabs/sif's siftool:
``new|add|del|list|info|dump|header|setprim``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from capsa.cli.sif_args import int32, integer, uint32
from capsa.errors import UsageError

if TYPE_CHECKING:
    from capsa.sif.writer import NewObject

HELP = "Inspect and edit SIF images (the siftool commands)"

# --datatype N -> DataType value (0x4000 + N), as siftool numbers them
_DATATYPES = range(1, 12)
_PART_ARCHES = ["386", "amd64", "arm", "arm64", "ppc64", "ppc64le", "mips", "mipsle",
                "mips64", "mips64le", "s390x", "riscv64"]


def _choices(names: list[str]) -> str:
    return ", ".join(f"{i}={name}" for i, name in enumerate(names, 1))


_DATATYPE_HELP = "kind of object (required): " + _choices(
    ["definition file", "environment", "labels", "partition", "signature", "generic JSON",
     "generic", "crypto message", "SBOM", "OCI root index", "OCI blob"])
_PARTTYPE_HELP = "partition role (partitions, required): " + _choices(
    ["system", "primary system", "data", "overlay"])
_PARTFS_HELP = "partition filesystem (partitions, required): " + _choices(
    ["squashfs", "ext3", "immutable objects", "raw"])
_PARTARCH_HELP = "partition CPU architecture (partitions, required): " + _choices(_PART_ARCHES)
_SIGNHASH_HELP = "hash of the signature (signatures, required): " + _choices(
    ["SHA-256", "SHA-384", "SHA-512", "BLAKE2s-256", "BLAKE2b-256"])


# sub-command -> (takes an object ID, one-line help, description)
_SUBCOMMANDS: dict[str, tuple[bool, str, str]] = {
    "new": (False, "Write an empty SIF image", "Write a new SIF image holding no objects."),
    "add": (False, "Append an object", "Append the content of a file as a new object."),
    "del": (True, "Remove an object", "Remove the object with this ID from the image."),
    "list": (False, "List the objects", "List the objects of the image, one a line."),
    "info": (True, "Describe an object", "Print the descriptor of the object with this ID."),
    "dump": (True, "Print an object", "Write the content of the object with this ID to stdout."),
    "header": (False, "Print the global header", "Print the global header of the image."),
    "setprim": (True, "Choose the primary partition",
                "Make the system partition with this ID the primary one."),
}


def configure(parser: argparse.ArgumentParser) -> None:
    # Only the sub-command that runs gets a parser (in run): building all eight
    # with their flags would cost a couple of milliseconds on every `sif list`.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Show the global header, the object descriptors and the objects of a SIF image,\n"
        "or add and remove objects.\n\ncommands:\n"
        + "".join(f"  {name:<9} {help_line}\n" for name, (_, help_line, _) in
                  _SUBCOMMANDS.items()))
    parser.add_argument("sif_args", nargs=argparse.REMAINDER, metavar="<command> ...",
                        help="a command and its arguments (see '<command> --help')")


def _subparser(prog: str, name: str) -> argparse.ArgumentParser:
    from capsa.cli.main import ArgumentParser, add_global_flags

    takes_id, _, description = _SUBCOMMANDS[name]
    parser = ArgumentParser(prog=f"{prog} {name}", description=description)
    if takes_id:
        parser.add_argument("id", type=uint32)
    parser.add_argument("sif_path")
    if name == "add":
        parser.add_argument("object_path")
        _add_flags(parser)
    add_global_flags(parser)
    return parser


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    """The sub-command's arguments: ``argv`` is ``[command, args...]``."""
    if not argv:
        raise UsageError(f"{prog} needs a command: {', '.join(_SUBCOMMANDS)}")
    name = argv[0]
    if name not in _SUBCOMMANDS:
        raise UsageError(f'unknown command "{name}" for "{prog}"')
    args = _subparser(prog, name).parse_args(argv[1:])
    args.sif_command = name
    return args


def _add_flags(add: argparse.ArgumentParser) -> None:
    add.add_argument("--datatype", type=integer, default=0, help=_DATATYPE_HELP)
    add.add_argument("--parttype", type=int32, default=0, help=_PARTTYPE_HELP)
    add.add_argument("--partfs", type=int32, default=0, help=_PARTFS_HELP)
    add.add_argument("--partarch", type=int32, default=0, help=_PARTARCH_HELP)
    add.add_argument("--signhash", type=int32, default=0, help=_SIGNHASH_HELP)
    add.add_argument("--signentity", default="", metavar="FINGERPRINT",
                     help="fingerprint of the signing key, 40 hex digits (signatures, required)")
    add.add_argument("--sbomformat", default="", metavar="FORMAT",
                     help="SBOM format (SBOMs, required): cyclonedx-json, cyclonedx-xml, "
                          "github-json, spdx-json, spdx-rdf, spdx-tag-value, spdx-yaml, "
                          "syft-json")
    add.add_argument("--groupid", type=uint32, default=0,
                     help="object group, 0 for none (default 0)")
    add.add_argument("--link", "--linkid", dest="link", type=uint32, default=None,
                     help="ID of the object this one refers to (default: none)")
    add.add_argument("--alignment", type=integer, default=None,
                     help="align the object's offset to this many bytes "
                          "(default 4096 for partitions, none otherwise)")
    add.add_argument("--filename", default=None, metavar="NAME",
                     help="name stored in the descriptor (default: none)")


def _out(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    from capsa.cli.main import apply_global_flags, program_name

    prog = f"{program_name()} {getattr(args, 'command', 'sif')}"
    options = getattr(args, "global_options", None)  # None: called without main()
    args = parse(prog, list(args.sif_args))
    if options is not None:
        apply_global_flags(args, options)
    command = args.sif_command
    handler = {
        "new": _new, "add": _add, "del": _del, "list": _list, "info": _info, "dump": _dump,
        "header": _header, "setprim": _setprim,
    }[command]
    handler(args)
    return 0


def _new(args: argparse.Namespace) -> None:
    from capsa.sif.writer import create

    # siftool writes no launch script: only `build` does.
    create(args.sif_path, [], launch_script=b"")


def _list(args: argparse.Namespace) -> None:
    from capsa.sif.image import SifImage
    from capsa.sif.show import list_text

    with SifImage.open(args.sif_path) as image:
        _out(list_text(image.descriptors))


def _header(args: argparse.Namespace) -> None:
    from capsa.sif.image import SifImage
    from capsa.sif.show import header_text

    with SifImage.open(args.sif_path) as image:
        _out(header_text(image.header))


def _info(args: argparse.Namespace) -> None:
    from capsa.sif.image import SifImage
    from capsa.sif.show import info_text

    with SifImage.open(args.sif_path) as image:
        _out(info_text(image.get(args.id)))


def _dump(args: argparse.Namespace) -> None:
    from capsa.sif.image import SifImage

    with SifImage.open(args.sif_path) as image:
        descriptor = image.get(args.id)
        out = sys.stdout.buffer
        for chunk in image.stream(descriptor):
            out.write(chunk)
        out.flush()


def _del(args: argparse.Namespace) -> None:
    from capsa.sif.writer import delete_object

    delete_object(args.sif_path, args.id)


def _setprim(args: argparse.Namespace) -> None:
    from capsa.sif.writer import set_primary

    set_primary(args.sif_path, args.id)


def _add(args: argparse.Namespace) -> None:
    from capsa.sif.writer import add_objects

    add_objects(args.sif_path, [_new_object(args)])


def _new_object(args: argparse.Namespace) -> NewObject:
    """The NewObject that siftool's flags describe (checked in siftool's order)."""
    from capsa.sif.format import DataType
    from capsa.sif.writer import NewObject as New

    if args.datatype not in _DATATYPES:
        raise UsageError("--datatype flag is required with a valid range")
    data_type = DataType(0x4000 + args.datatype)
    fields = _common_fields(args)
    maker = _TYPE_FIELDS.get(args.datatype)
    if maker is not None:
        fields.update(maker(args))
    return New(data_type, **fields)  # type: ignore[arg-type]


def _common_fields(args: argparse.Namespace) -> dict[str, object]:
    import os

    from capsa.errors import NotFoundError

    if not os.path.exists(args.object_path):
        raise NotFoundError(f"object file {args.object_path} does not exist")
    if args.link is not None and args.link == 0:
        raise UsageError("invalid object ID")
    fields: dict[str, object] = {
        "path": args.object_path,
        "group_id": args.groupid,
        "linked_id": args.link or 0,
        "name": args.filename or "",
    }
    if args.alignment is not None:
        if args.alignment < 0:
            raise UsageError(f"invalid alignment {args.alignment}")
        # siftool passes 0 through, which means "no alignment" even for partitions
        fields["alignment"] = args.alignment or 1
    return fields


def _partition_fields(args: argparse.Namespace) -> dict[str, object]:
    from capsa.sif.format import FSType, PartType

    if not (args.parttype and args.partfs and args.partarch):
        raise UsageError(
            "with partition datatype, --partfs, --parttype and --partarch must be passed")
    if not 1 <= args.partarch <= len(_PART_ARCHES):
        raise UsageError("unknown architecture: unknown")
    return {"fs_type": FSType(args.partfs), "part_type": PartType(args.parttype),
            "arch": _PART_ARCHES[args.partarch - 1]}


def _signature_fields(args: argparse.Namespace) -> dict[str, object]:
    from capsa.sif.format import HashType

    try:
        fingerprint = bytes.fromhex(args.signentity)
    except ValueError:
        raise UsageError("failed to decode signing entity fingerprint: "
                         f"invalid hex {args.signentity!r}") from None
    if not 1 <= args.signhash <= 5:
        raise UsageError(f"invalid hash type: {args.signhash}")
    if len(fingerprint) != 20:
        raise UsageError("invalid signing entity fingerprint length: "
                         f"got {len(fingerprint)}, want 20")
    return {"hash_type": HashType(args.signhash), "fingerprint": fingerprint}


def _crypto_fields(args: argparse.Namespace) -> dict[str, object]:
    from capsa.sif.format import FormatType, MessageType

    del args  # siftool sets no metadata for these: the extra field stays zero
    return {"format_type": FormatType(0), "message_type": MessageType(0)}


def _sbom_fields(args: argparse.Namespace) -> dict[str, object]:
    if not args.sbomformat:
        raise UsageError("with SBOM datatype, --sbomformat must be passed")
    return {"sbom_format": args.sbomformat}


def _oci_fields(args: argparse.Namespace) -> dict[str, object]:
    return {"oci_digest": _sha256_of(args.object_path)}


# --datatype -> the type-specific descriptor fields it takes from the flags
_TYPE_FIELDS = {4: _partition_fields, 5: _signature_fields, 8: _crypto_fields,
                9: _sbom_fields, 10: _oci_fields, 11: _oci_fields}


def _sha256_of(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
