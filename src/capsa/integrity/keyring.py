"""The user's OpenPGP keyrings, kept where and how Apptainer keeps them.

``~/.apptainer/keys/pgp-public`` and ``pgp-secret`` (or the directory named
by ``APPTAINER_KEYSDIR``): binary OpenPGP, one transferable key after the
other, files mode 0600 in a 0700 directory.  A site-wide public keyring,
``global-pgp-public`` in capsa's configuration directory, is also trusted
when verifying.

Every change is written to a temporary file beside the keyring and renamed
over it, so a failure never leaves a half-written keyring.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from capsa.errors import AlreadyExistsError, FormatError, NotFoundError, SignatureError
from capsa.integrity.pgpkeys import PgpKey, split_keys
from capsa.site import DEFAULT_CONFIG_DIR

PUBLIC_NAME = "pgp-public"
SECRET_NAME = "pgp-secret"
GLOBAL_NAME = "global-pgp-public"
GLOBAL_KEYRING = Path(DEFAULT_CONFIG_DIR) / GLOBAL_NAME  # the site's, where the CLI says


def default_keys_dir() -> Path:
    """The caller's keyrings (:func:`capsa.userdirs.keys_dir`)."""
    from capsa.userdirs import keys_dir

    return Path(keys_dir())


def read_keyring(path: str | os.PathLike[str]) -> list[PgpKey]:
    """The keys in the keyring file *path*; [] if it does not exist."""
    try:
        with open(path, "rb") as ring:
            data = ring.read()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise SignatureError(f"unable to read keyring {path}: {err.strerror}") from err
    try:
        return split_keys(data)
    except FormatError as err:
        raise FormatError(f"keyring {path} is corrupt: {err}") from err


def find_key(keys: list[PgpKey], fingerprint: str) -> PgpKey | None:
    want = fingerprint.upper().removeprefix("0X")
    for key in keys:
        if key.fingerprint_hex == want:
            return key
    return None


class Keyring:
    """A pair of keyrings in one directory."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory) if directory is not None else default_keys_dir()

    @property
    def public_path(self) -> Path:
        return self.dir / PUBLIC_NAME

    @property
    def secret_path(self) -> Path:
        return self.dir / SECRET_NAME

    def public_keys(self) -> list[PgpKey]:
        return read_keyring(self.public_path)

    def secret_keys(self) -> list[PgpKey]:
        return read_keyring(self.secret_path)

    def add_public(self, key: PgpKey) -> None:
        keys = self.public_keys()
        if find_key(keys, key.fingerprint_hex) is not None:
            raise AlreadyExistsError(
                f"the key with fingerprint {key.fingerprint_hex} already belongs to the keyring"
            )
        self._store(self.public_path, [*keys, _public_only(key)])

    def add_secret(self, key: PgpKey) -> None:
        keys = self.secret_keys()
        if find_key(keys, key.fingerprint_hex) is not None:
            raise AlreadyExistsError(
                f"the key with fingerprint {key.fingerprint_hex} already belongs to the keyring"
            )
        self._store(self.secret_path, [*keys, key])

    def remove_public(self, fingerprint: str) -> None:
        keys = self.public_keys()
        key = find_key(keys, fingerprint)
        if key is None:
            raise NotFoundError("no key matching given fingerprint found")
        self._store(self.public_path, [k for k in keys if k is not key])

    def remove_secret(self, fingerprint: str) -> None:
        keys = self.secret_keys()
        key = find_key(keys, fingerprint)
        if key is None:
            raise NotFoundError("no key matching given fingerprint found")
        self._store(self.secret_path, [k for k in keys if k is not key])

    def ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise SignatureError(f"unable to create {self.dir}: {err.strerror}") from err

    def _store(self, path: Path, keys: list[PgpKey]) -> None:
        self.ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                for key in keys:
                    out.write(key.raw)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _public_only(key: PgpKey) -> PgpKey:
    if not key.secret:
        return key
    from dataclasses import replace

    return replace(key, secret=False, encrypted=False, raw=key.public_part())
