"""``capsa verify``: check the digital signature(s) of a SIF image.

Against the site's and the user's OpenPGP keyrings (the default; keys are
never fetched from a keyserver, so ``--local`` changes nothing), or a PEM
public key (``--key``) for DSSE signatures.  ``--legacy-insecure`` checks
old per-object signatures instead.  Text and ``--json`` output follow
Apptainer's; any failure is one FATAL line and exit status 255.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from capsa.cli import log
from capsa.cli.sif_args import add_object_selection, selection
from capsa.errors import CapsaError

if TYPE_CHECKING:
    from capsa.integrity.verify import VerifyResult

HELP = "Verify digital signature(s) within an image"

_TYPE_NAMES = {
    0x4001: "Def.FILE", 0x4002: "Env.Vars", 0x4003: "JSON.Labels", 0x4004: "FS",
    0x4005: "Signature", 0x4006: "JSON.Generic", 0x4007: "Generic/Raw",
    0x4008: "Cryptographic Message", 0x4009: "SBOM", 0x400A: "OCI.RootIndex",
    0x400B: "OCI.Blob",
}
_COLOURS = {"LOCAL": "\x1b[32m", "GLOBAL": "\x1b[36m", "REMOTE": "\x1b[33m"}


def configure(parser: argparse.ArgumentParser) -> None:
    add_object_selection(parser, "verify")
    parser.add_argument("-a", "--all", action="store_true", help="verify all objects")
    parser.add_argument("--legacy-insecure", action="store_true",
                        help="enable verification of (insecure) legacy signatures")
    parser.add_argument("-j", "--json", action="store_true", help="output json")
    parser.add_argument("-l", "--local", action="store_true",
                        help="only verify with local key(s) in keyring")
    parser.add_argument("-u", "--url", default=None, help="specify a URL for a key server")
    parser.add_argument("--key", default=None, help="path to the public key file")
    parser.add_argument("image")


def run(args: argparse.Namespace) -> int:
    from capsa.integrity.verify import key_material, verify_image

    if args.key is not None:
        log.info(f"Verifying image with key material from '{args.key}'")
    else:
        log.info("Verifying image with PGP key material")
    if args.url:
        log.warning("keyservers are not supported: verifying with local key material only")
    colour = sys.stdout.isatty() and getattr(args.global_options, "colour", True)
    report = _JsonReport() if args.json else None
    groups, objects = selection(args)
    keys = key_material(args.key, global_keyring=_global_keyring(args))
    try:
        verify_image(
            args.image, keys, groups=groups, objects=objects,
            legacy=args.legacy_insecure, all_objects=args.all,
            callback=report.add if report else (lambda r: _print_result(r, colour)),
        )
    except CapsaError as err:
        if report:
            report.write()
        raise type(err)(f"Failed to verify container: {err}") from None
    if report:
        report.write()
    else:
        log.info(f"Verified signature(s) from image '{args.image}'")
    return 0


def _print_result(result: VerifyResult, colour: bool) -> None:
    signer = result.signer
    if signer is not None:
        label = f"[{signer.source}]"
        prefix = f"{_COLOURS[signer.source]}{label}\x1b[0m" if colour else label
        if signer.name:
            print(f"{prefix:<18} Signing entity: {signer.name}")
        else:
            log.warning("Primary identity unknown")
        print(f"{prefix:<18} Fingerprint: {signer.fingerprint.hex().upper()}")
    if result.verified:
        print("Objects verified:")
        print(f"{'ID':<4}|{'GROUP':<8}|{'LINK':<8}|TYPE")
        print("-" * 48)
    for d in result.verified:
        group = str(d.group_id) if d.group_id else "NONE"
        link = "NONE"
        if d.linked_id:
            link = f"{d.linked_id} (G)" if d.linked_is_group else str(d.linked_id)
        print(f"{d.id:<4}|{group:<8}|{link:<8}|{_TYPE_NAMES.get(int(d.data_type), 'Unknown')}")
    if result.error:
        print(f"\nError encountered during signature verification: {result.error}")


class _JsonReport:
    """Apptainer's ``--json`` document: one entry per checked object."""

    def __init__(self) -> None:
        self.signatures = 0
        self.entries: list[dict[str, Any]] = []

    def add(self, result: VerifyResult) -> None:
        self.signatures += 1
        signer = result.signer
        name, fingerprint, local, checked = "unknown", "", False, False
        if signer is not None and signer.fingerprint:
            name = signer.name or "unknown"
            fingerprint = signer.fingerprint.hex()
            local, checked = signer.source == "LOCAL", True
        rows = [(d, True) for d in result.verified]
        if result.failed_object is not None:
            rows.append((result.failed_object, False))
        for d, ok in rows:
            self.entries.append({"Signer": {
                "Partition": _TYPE_NAMES.get(int(d.data_type), "Unknown"), "Name": name,
                "Fingerprint": fingerprint, "KeyLocal": local, "KeyCheck": checked,
                "DataCheck": ok,
            }})

    def write(self) -> None:
        document = {"Signatures": self.signatures, "SignerKeys": self.entries or None}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()


def _global_keyring(args: argparse.Namespace) -> str | None:
    from capsa.integrity.keyring import GLOBAL_NAME

    site = getattr(args, "site", None)
    return None if site is None else str(site.path(GLOBAL_NAME))
