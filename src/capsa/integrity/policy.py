"""Site policy: run only images signed by a trusted key.

Like Apptainer's execution control list, a site can require every image
that ``capsa exec``, ``run`` or ``shell`` starts to carry valid signatures
by a key it trusts.  The rule lives in capsa's configuration file,
``/etc/capsa/capsa.conf`` (another with the global ``--config`` flag),
in Apptainer's ``key = value`` style::

    # Refuse images that are not signed by a key of the keyring below.
    require signed images = yes
    # An OpenPGP keyring (binary, as `capsa key export` writes it) or a
    # PEM public key for DSSE signatures.
    signature keyring = /etc/capsa/global-pgp-public

How the runtime uses it (before it mounts anything)::

    from capsa.integrity.policy import enforce_signed, load_policy

    policy = load_policy(args.global_options.config)      # or a flag's values
    if policy.required:
        enforce_signed(image_path, keyring_path=policy.keyring)  # SignatureError

:func:`enforce_signed` raises :class:`capsa.errors.SignatureError` with one
line saying why (unsigned, unknown key, altered) and returns ``None`` when
every object group of the image is signed by a key of that keyring and
unaltered.  Non-SIF images cannot be signed, so they are refused too.
This module imports no cryptography until a check actually runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from capsa.errors import CapsaError, FormatError, NotFoundError, SignatureError, UsageError
from capsa.integrity.keyring import CONFIG_DIR, GLOBAL_KEYRING

DEFAULT_CONFIG = CONFIG_DIR / "capsa.conf"
REQUIRE_KEY = "require signed images"
KEYRING_KEY = "signature keyring"
_TRUE = ("yes", "true", "1", "on")
_FALSE = ("no", "false", "0", "off", "")


@dataclass(frozen=True, slots=True)
class SigningPolicy:
    required: bool = False
    keyring: str = str(GLOBAL_KEYRING)


def _normalise(key: str) -> str:
    return " ".join(key.lower().split())


def read_config(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``key = value`` pairs of the configuration file (keys lower-cased).

    The default file may be absent (no settings); a file named explicitly
    must exist.
    """
    target = DEFAULT_CONFIG if path is None else path
    try:
        with open(target, encoding="utf-8") as conf:
            lines = conf.read().splitlines()
    except FileNotFoundError:
        if path is None:
            return {}
        raise NotFoundError(f"configuration file {target} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(f"unable to read configuration file {target}: {err}") from None
    settings = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if "=" not in text:
            raise FormatError(f"{target}:{number}: expected 'key = value'")
        key, value = text.split("=", 1)
        settings[_normalise(key)] = value.strip()
    return settings


def load_policy(config_path: str | os.PathLike[str] | None = None) -> SigningPolicy:
    """The signing policy the configuration file sets (by default: none)."""
    settings = read_config(config_path)
    flag = settings.get(REQUIRE_KEY, "no").lower()
    if flag not in _TRUE + _FALSE:
        raise FormatError(f"invalid value for '{REQUIRE_KEY}': {flag!r} (want yes or no)")
    keyring = settings.get(KEYRING_KEY) or str(GLOBAL_KEYRING)
    return SigningPolicy(required=flag in _TRUE, keyring=keyring)


def enforce_signed(image_path: str | os.PathLike[str], *, keyring_path: str) -> None:
    """Raise SignatureError unless *image_path* is signed by a key in *keyring_path*.

    *keyring_path* is an OpenPGP keyring or a PEM public key.  Every object
    group must be signed, every signature valid, and nothing altered.
    """
    from capsa.integrity.verify import KeyMaterial, Keyring, verify_image

    if not os.path.isfile(keyring_path):
        raise SignatureError(f"signature policy: keyring {keyring_path} not found")
    if _is_pem(keyring_path):
        from capsa.integrity.dsse import load_public_key

        keys = KeyMaterial(pem_keys=(load_public_key(keyring_path),))
    else:
        keys = KeyMaterial(keyrings=(Keyring(keyring_path, "GLOBAL"),))
    try:
        verify_image(image_path, keys)
    except (SignatureError, FormatError, NotFoundError, UsageError) as err:
        raise SignatureError(
            f"image {os.fspath(image_path)} is not signed by a key in {keyring_path}: {err}"
        ) from None
    except CapsaError as err:
        raise SignatureError(f"image {os.fspath(image_path)} could not be verified: {err}") \
            from None


def _is_pem(path: str) -> bool:
    """A PEM key (not an ASCII-armored OpenPGP keyring)?"""
    with open(path, "rb") as key:
        head = key.read(15)
    return head.startswith(b"-----BEGIN ") and head != b"-----BEGIN PGP "
