"""``capsa sign``: add digital signature(s) to a SIF image.

With the local OpenPGP keyring (the only secret key, ``--keyidx N``, or a
choice at the prompt) the metadata is clear-signed; with ``--key
private.pem`` (ECDSA, Ed25519 or RSA; an encrypted PEM's password is read
from standard input) it is wrapped in a DSSE envelope.  One signature per
object group unless ``--group-id`` or ``--sif-id`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from capsa.cli import log
from capsa.cli.sif_args import add_object_selection, selection
from capsa.errors import CapsaError, SignatureError

if TYPE_CHECKING:
    from capsa.integrity.sign import Signer

HELP = "Add digital signature(s) to an image"


def configure(parser: argparse.ArgumentParser) -> None:
    add_object_selection(parser, "sign")
    parser.add_argument("-k", "--keyidx", type=int, default=None,
                        help="private key to use (index from 'key list --secret')")
    parser.add_argument("-a", "--all", action="store_true",
                        help="sign all objects (deprecated: now the default behavior)")
    parser.add_argument("--key", default=None, help="path to the private key file")
    parser.add_argument("image")


def run(args: argparse.Namespace) -> int:
    from capsa.integrity.sign import sign_image

    if args.key is not None and args.keyidx is not None:
        raise SignatureError("--keyidx selects a PGP key; it cannot be used with --key")
    try:
        signer = _pem_signer(args.key) if args.key is not None else _pgp_signer(args.keyidx)
        groups, objects = selection(args)
        sign_image(args.image, signer, groups=groups, objects=objects)
    except CapsaError as err:
        raise type(err)(f"Failed to sign container: {err}") from None
    log.info(f"Signature created and applied to image '{args.image}'")
    return 0


def _pem_signer(path: str) -> Signer:
    from capsa.integrity.dsse import is_encrypted_pem, load_private_key
    from capsa.integrity.sign import DsseSigner

    log.info(f"Signing image with key material from '{path}'")
    password = None
    if is_encrypted_pem(path):
        password = _password_from_stdin()
    try:
        return DsseSigner(load_private_key(path, password))
    except SignatureError as err:
        raise SignatureError(str(err).removeprefix("Failed to load key material: ")) from None


def _password_from_stdin() -> bytes:
    """As sigstore's GetPasswordFromStdIn: a prompt on a terminal, else all of stdin."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("Enter password for private key: ").encode()
    return sys.stdin.buffer.read().rstrip(b"\r\n")


def _pgp_signer(index: int | None) -> Signer:
    from capsa.cli.commands.key import ask_passphrase, select_key
    from capsa.errors import UsageError
    from capsa.integrity.keyring import Keyring
    from capsa.integrity.sign import PgpSigner

    log.info("Signing image with PGP key material")
    keys = Keyring().secret_keys()
    if index is not None:
        if not 0 <= index < len(keys):
            raise UsageError("index out of range")
        key = keys[index]
    else:
        key = select_key(keys, "private")
    return PgpSigner(key, ask_passphrase(key))
