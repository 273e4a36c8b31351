"""``capsa key``: the OpenPGP keyrings Apptainer keeps in ``~/.apptainer/keys``.

``newpair`` (prompts, or ``--name --email --comment --password`` for
scripts), ``list [--secret]``, ``export [--secret] [--armor] FILE``,
``import FILE``, ``remove FINGERPRINT``.  Printed text follows Apptainer's.
A passphrase is read from the terminal without echo, or as one line of
standard input when that is not a terminal (scripts).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from typing import TYPE_CHECKING

from capsa.errors import CapsaError, NotFoundError, SignatureError, UsageError

if TYPE_CHECKING:
    from capsa.integrity.keyring import Keyring
    from capsa.integrity.pgpkeys import PgpKey

HELP = "Manage OpenPGP keys"
_MIN_BITS = 1024


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true", "y", "yes"):
        return True
    if value in ("0", "f", "false", "n", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def configure(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="key_command", metavar="<command>", required=True)
    new = subs.add_parser("newpair", help="Create a new key pair",
                          description="Create a new OpenPGP key pair in the local keyring.")
    new.add_argument("-N", "--name", help="key owner name")
    new.add_argument("-C", "--comment", help="key comment")
    new.add_argument("-E", "--email", help="key owner email")
    new.add_argument("-P", "--password", help="key passphrase")
    new.add_argument("-b", "--bit-length", type=int, default=4096,
                     help="key size in bits (default 4096)")
    new.add_argument("--push", type=_bool, nargs="?", const=True, default=False,
                     help="push the public key to the keyserver (not supported)")
    lst = subs.add_parser("list", help="List keys in your local or in the global keyring",
                          description="List the keys in the local keyring.")
    lst.add_argument("-s", "--secret", action="store_true", help="list private keys")
    exp = subs.add_parser("export", help="Export a public or private key into a specific file",
                          description="Export a public or private key into a file.")
    exp.add_argument("-s", "--secret", action="store_true", help="export a secret key")
    exp.add_argument("-a", "--armor", action="store_true", help="ascii armored format")
    exp.add_argument("file")
    imp = subs.add_parser("import", help="Import a local key into the local or global keyring",
                          description="Import public and/or private keys from a file.")
    imp.add_argument("--new-password", action="store_true",
                     help="set a new password to the private key")
    imp.add_argument("file")
    rem = subs.add_parser("remove", help="Remove a local public key from your local or the "
                          "global keyring", description="Remove a key from the local keyring.")
    rem.add_argument("-s", "--secret", action="store_true", help="remove a private key")
    rem.add_argument("fingerprint")


def run(args: argparse.Namespace) -> int:
    from capsa.integrity.keyring import Keyring

    keyring = Keyring()
    handler = {"newpair": _newpair, "list": _list, "export": _export,
               "import": _import, "remove": _remove}[args.key_command]
    try:
        handler(args, keyring)
    except CapsaError as err:
        raise type(err)(f"{_FAILURE[args.key_command]}: {err}") from None
    return 0


_FAILURE = {
    "newpair": "Failed to create a new key pair",
    "list": "While listing keys",
    "export": "Unable to export key",
    "import": "Unable to import key",
    "remove": "Unable to remove key",
}


# -- prompting --------------------------------------------------------------

def ask(prompt: str, *, secret: bool = False) -> str:
    """One answer from the terminal, or one line of standard input."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt) if secret else input(prompt)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = sys.stdin.readline()
    sys.stdout.write("\n")
    return line.rstrip("\r\n")


def ask_index(count: int, prompt: str) -> int:
    answer = ask(prompt).strip()
    try:
        index = int(answer)
    except ValueError:
        raise UsageError(f"invalid input: {answer!r} is not a number") from None
    if not 0 <= index < count:
        raise UsageError("index out of range")
    return index


def print_keys(keys: list[PgpKey]) -> None:
    """Each key as Apptainer's ``key list`` prints it."""
    from capsa.integrity.pgpkeys import split_user_id

    for index, key in enumerate(keys):
        first = f"{index})"
        rows = [(first if i == 0 else "", "User:", "{} ({}) <{}>".format(*split_user_id(uid)))
                for i, uid in enumerate(key.user_ids or ("",))]
        rows += [("", "Creation time:", _go_time(key.created)),
                 ("", "Fingerprint:", key.fingerprint_hex),
                 ("", "Length (in bits):", str(key.bits))]
        width0 = max(len(r[0]) for r in rows) + 2
        width1 = max(len(r[1]) for r in rows) + 2
        for c0, c1, c2 in rows:
            print(f"{c0:<{width0}}{c1:<{width1}}{c2}")
        print()


def _go_time(seconds: int) -> str:
    """A time as Go prints a time.Time: ``2006-01-02 15:04:05 -0700 MST``."""
    local = time.localtime(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", local)


def select_key(keys: list[PgpKey], kind: str) -> PgpKey:
    if not keys:
        raise NotFoundError("keyring is empty")
    if len(keys) == 1:
        return keys[0]
    print_keys(keys)
    return keys[ask_index(len(keys), f"Enter # of {kind} key to use : ")]


def ask_passphrase(key: PgpKey, prompt: str = "Enter key passphrase : ") -> str | None:
    """The passphrase of *key* (None when it has none)."""
    return ask(prompt, secret=True) if key.encrypted else None


# -- sub-commands -----------------------------------------------------------

def _newpair(args: argparse.Namespace, keyring: Keyring) -> None:
    from capsa.integrity.pgp import GnuPG
    from capsa.integrity.pgpkeys import split_keys

    if args.bit_length < _MIN_BITS:
        raise UsageError(f"key size must be at least {_MIN_BITS} bits")
    name = args.name if args.name is not None else ask("Enter your name (e.g., John Doe) : ")
    email = args.email if args.email is not None else ask(
        "Enter your email address (e.g., john.doe@example.com) : ")
    comment = args.comment if args.comment is not None else ask(
        "Enter optional comment (e.g., development keys) : ")
    password = args.password if args.password is not None else _new_password()
    if not name.strip():
        raise UsageError("a key needs a name")
    if args.push:
        print("WARNING: pushing keys to a keyserver is not supported; the key stays local",
              file=sys.stderr)
    print("Generating Entity and OpenPGP Key Pair... ", end="", flush=True)
    public, secret = GnuPG().generate(name, comment, email, password, args.bit_length)
    secret_key, public_key = split_keys(secret)[0], split_keys(public)[0]
    keyring.add_secret(secret_key)
    keyring.add_public(public_key)
    print("done")


def _new_password() -> str:
    first = ask("Enter a passphrase : ", secret=True)
    second = ask("Retype your passphrase : ", secret=True)
    if first != second:
        raise UsageError("passphrases do not match")
    return first


def _list(args: argparse.Namespace, keyring: Keyring) -> None:
    if args.secret:
        print(f"Private key listing ({keyring.secret_path}):\n")
        print_keys(keyring.secret_keys())
    else:
        print(f"Public key listing ({keyring.public_path}):\n")
        print_keys(keyring.public_keys())


def _export(args: argparse.Namespace, keyring: Keyring) -> None:
    from capsa.integrity.pgpkeys import ARMOR_PRIVATE, ARMOR_PUBLIC, armor

    keys = keyring.secret_keys() if args.secret else keyring.public_keys()
    key = select_key(keys, "private" if args.secret else "public")
    if args.secret and key.encrypted:
        from capsa.integrity.pgp import GnuPG

        GnuPG().unlock_check(key, ask_passphrase(key))
    data = armor(key.raw, ARMOR_PRIVATE if args.secret else ARMOR_PUBLIC) if args.armor \
        else key.raw
    _write_new(args.file, data, 0o600 if args.secret else 0o644)
    kind = "Private" if args.secret else "Public"
    print(f"{kind} key with fingerprint {key.fingerprint_hex} correctly exported "
          f"to file: {args.file}")


def _write_new(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.capsa-tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise SignatureError(f"unable to create file: {err.strerror}") from None


def _import(args: argparse.Namespace, keyring: Keyring) -> None:
    from capsa.integrity.pgpkeys import split_keys

    try:
        with open(args.file, "rb") as source:
            data = source.read()
    except OSError as err:
        raise NotFoundError(f"unable to read {args.file}: {err.strerror}") from None
    keys = split_keys(data)
    if not keys:
        raise SignatureError(f"no key found in {args.file}")
    if args.new_password:
        raise UsageError("--new-password is not supported; keys keep their passphrase")
    _check_new(keyring, keys)
    for key in keys:
        if key.secret:
            if key.encrypted:
                from capsa.integrity.pgp import GnuPG

                GnuPG().unlock_check(key, ask("Enter your key password : ", secret=True))
            keyring.add_secret(key)
            print(f"Key with fingerprint {key.fingerprint_hex} successfully added to the "
                  "private keyring")
        keyring.add_public(key)
        print(f"Key with fingerprint {key.fingerprint_hex} successfully added to the "
              "public keyring")


def _check_new(keyring: Keyring, keys: list[PgpKey]) -> None:
    """Refuse before writing anything if any key is already there."""
    from capsa.errors import AlreadyExistsError
    from capsa.integrity.keyring import find_key

    public, secret = keyring.public_keys(), keyring.secret_keys()
    for key in keys:
        if find_key(public, key.fingerprint_hex) or (
                key.secret and find_key(secret, key.fingerprint_hex)):
            raise AlreadyExistsError(f"the key with fingerprint {key.fingerprint_hex} "
                                     "already belongs to the keyring")


def _remove(args: argparse.Namespace, keyring: Keyring) -> None:
    if args.secret:
        keyring.remove_secret(args.fingerprint)
    else:
        keyring.remove_public(args.fingerprint)
