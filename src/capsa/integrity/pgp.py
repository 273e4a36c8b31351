"""OpenPGP through GnuPG: clear-signing, checking clear-signed messages,
generating key pairs.

Why GnuPG: it is the maintained OpenPGP implementation every Debian host
has (``gpg``, ``gpgv``), it reads and writes the keyrings Apptainer keeps
(concatenated transferable keys) and it protects secret keys with a
passphrase, which the Python bindings to Sequoia cannot yet do.  It is run
through :mod:`capsa.proc`, never through a wrapper that spawns it itself.

The user's ``~/.gnupg`` is never touched: each operation runs with a fresh
``GNUPGHOME`` in a private temporary directory built from capsa's own
keyring files, and any agent started there is stopped before it is removed.
Checking a signature needs no agent at all (``gpgv``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from capsa.errors import SignatureError, ToolError
from capsa.integrity.pgpkeys import PgpKey
from capsa.proc import DEFAULT_RUNNER, Runner, child_env

# OpenPGP hash algorithm ids accepted in signatures over image metadata
# (those of RFC 4880 that NIST still recommends, as the reference does).
_ACCEPTED_HASHES = {"8": "SHA256", "9": "SHA384", "10": "SHA512", "11": "SHA224"}

CLEARSIGN_BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
_SIGNATURE_BEGIN = b"-----BEGIN PGP SIGNATURE-----"


@dataclass(frozen=True, slots=True)
class CheckedMessage:
    """What a good clear-signed message said, and who signed it."""

    plaintext: bytes
    fingerprint: bytes  # primary key of the signer, 20 bytes
    hash_name: str


def is_clearsigned(data: bytes) -> bool:
    return data.lstrip().startswith(CLEARSIGN_BEGIN)


def clearsigned_text(data: bytes) -> bytes:
    """The signed text of a clear-signed message, without checking it.

    Used only to tell legacy signatures (``SIFHASH:``) from the others; what
    is trusted always comes from :meth:`GnuPG.check_clearsigned`.
    """
    data = data.lstrip().replace(b"\r\n", b"\n")
    if not data.startswith(CLEARSIGN_BEGIN):
        raise SignatureError("clearsigned message not found")
    head, sep, rest = data.partition(b"\n\n")
    del head
    text, found, _ = rest.partition(b"\n" + _SIGNATURE_BEGIN)
    if not sep or not found:
        raise SignatureError("clearsigned message not found")
    lines = [line[2:] if line.startswith(b"- ") else line for line in text.split(b"\n")]
    return b"\n".join(line.rstrip(b"\r") for line in lines)


def _status(stdout: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("[GNUPG:] "):
            words = line[9:].split()
            if words:
                found.setdefault(words[0], words[1:])
    return found


class GnuPG:
    """The ``gpg``/``gpgv`` programs, run in throwaway homes."""

    def __init__(self, runner: Runner = DEFAULT_RUNNER) -> None:
        self.runner = runner

    @contextlib.contextmanager
    def _home(self) -> Iterator[str]:
        home = tempfile.mkdtemp(prefix="capsa-gpg-")
        os.chmod(home, 0o700)
        try:
            yield home
        finally:
            if os.path.exists(os.path.join(home, "S.gpg-agent")):
                with contextlib.suppress(ToolError):
                    self.runner.run(["gpgconf", "--kill", "gpg-agent"],
                                    env=self._env(home), check=False)
            shutil.rmtree(home, ignore_errors=True)

    @staticmethod
    def _env(home: str) -> dict[str, str]:
        return child_env("GPG", GNUPGHOME=home, LC_ALL="C", LANG="C")

    def _gpg(self, home: str, args: Sequence[str], stdin: bytes | None = None,
             check: bool = True) -> tuple[int, bytes, bytes]:
        argv = ["gpg", "--batch", "--no-tty", "--quiet", "--no-greeting",
                "--pinentry-mode", "loopback", *args]
        done = self.runner.run(argv, env=self._env(home), input=stdin or b"", check=False)
        if check and done.returncode != 0:
            raise SignatureError(_gpg_reason(done.stderr))
        return done.returncode, done.stdout, done.stderr

    def check_clearsigned(self, message: bytes, keyring: bytes) -> CheckedMessage:
        """Check *message* against *keyring* (binary public keys); the text and signer."""
        with self._home() as home:
            ring = os.path.join(home, "keyring")
            with open(ring, "wb") as out:
                out.write(keyring)
            argv = ["gpgv", "--status-fd", "1", "--keyring", ring,
                    "--output", os.path.join(home, "out"), "-"]
            done = self.runner.run(argv, env=self._env(home), input=message, check=False)
            status = _status(done.stdout)
            if "VALIDSIG" not in status or done.returncode != 0:
                raise SignatureError(_verify_reason(status, done.stderr))
            with open(os.path.join(home, "out"), "rb") as out:
                plaintext = out.read()
        valid = status["VALIDSIG"]
        hash_name = _ACCEPTED_HASHES.get(valid[7] if len(valid) > 7 else "")
        if hash_name is None:
            raise SignatureError("openpgp: signature hash algorithm is not accepted")
        return CheckedMessage(plaintext.removesuffix(b"\n"), bytes.fromhex(valid[-1]), hash_name)

    def clearsign(self, plaintext: bytes, key: PgpKey, passphrase: str | None) -> bytes:
        """Clear-sign *plaintext* with the primary key of secret *key* (SHA256)."""
        with self._home() as home:
            keyfile = os.path.join(home, "key")
            with open(keyfile, "wb") as out:
                out.write(key.raw)
            self._gpg(home, ["--import", keyfile])
            infile = os.path.join(home, "in")
            with open(infile, "wb") as out:
                out.write(plaintext)
            outfile = os.path.join(home, "in.asc")
            self._gpg(home, [*_passphrase_args(passphrase), "--digest-algo", "SHA256",
                             "--local-user", key.fingerprint_hex + "!",
                             "--output", outfile, "--clearsign", infile],
                      stdin=_passphrase_input(passphrase))
            with open(outfile, "rb") as signed:
                return signed.read()

    def unlock_check(self, key: PgpKey, passphrase: str | None) -> None:
        """Fail with a clear error unless *passphrase* opens *key*."""
        self.clearsign(b"capsa", key, passphrase)

    def generate(self, name: str, comment: str, email: str, passphrase: str,
                 bits: int) -> tuple[bytes, bytes]:
        """A new RSA key pair: (public key, secret key), binary."""
        fields = [f"Name-Real: {name}"]
        fields += [f"Name-Comment: {comment}"] if comment else []
        fields += [f"Name-Email: {email}"] if email else []
        for value in (name, comment, email, passphrase):
            if "\n" in value or "\r" in value:
                raise SignatureError("key details and passphrase must be single lines")
        with self._home() as home:
            params = os.path.join(home, "params")
            protection = f"Passphrase: {passphrase}" if passphrase else "%no-protection"
            with open(params, "w", encoding="utf-8") as out:
                out.write(
                    f"Key-Type: RSA\nKey-Length: {bits}\nKey-Usage: sign,cert\n"
                    f"Subkey-Type: RSA\nSubkey-Length: {bits}\nSubkey-Usage: encrypt\n"
                    + "\n".join(fields) + f"\nExpire-Date: 0\n{protection}\n%commit\n"
                )
            self._gpg(home, ["--gen-key", params])
            public = self._gpg(home, ["--export"])[1]
            secret = self._gpg(home, [*_passphrase_args(passphrase), "--export-secret-keys"],
                               stdin=_passphrase_input(passphrase))[1]
        return public, secret


def _passphrase_args(passphrase: str | None) -> list[str]:
    return ["--passphrase-fd", "0"] if passphrase is not None else []


def _passphrase_input(passphrase: str | None) -> bytes | None:
    return (passphrase + "\n").encode() if passphrase is not None else None


def _gpg_reason(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    if "Bad passphrase" in text or "bad passphrase" in text.lower():
        return "openpgp: invalid passphrase"
    if "No passphrase given" in text or "no passphrase" in text.lower():
        return "openpgp: a passphrase is needed to unlock the key"
    lines = [line.removeprefix("gpg: ") for line in text.strip().splitlines()]
    return f"gpg: {lines[-1]}" if lines else "gpg failed"


def _verify_reason(status: dict[str, list[str]], stderr: bytes) -> str:
    if "BADSIG" in status:
        return "openpgp: invalid signature: hash tag doesn't match"
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        errsig = status.get("ERRSIG", [])
        if "NO_PUBKEY" in status or (len(errsig) > 5 and errsig[5] == "9"):
            return "openpgp: signature made by unknown entity"
        return "openpgp: signature could not be checked"
    if "NODATA" in status:
        return "openpgp: invalid data: no signature found"
    text = stderr.decode(errors="replace").strip().splitlines()
    return f"openpgp: {text[-1].removeprefix('gpgv: ')}" if text else "openpgp: bad signature"
