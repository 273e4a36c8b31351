"""Site policy: run only images signed by a trusted key.

Like Apptainer's execution control list, a site can require every image
that ``capsa exec``, ``run``, ``shell`` or ``instance start`` starts to carry
valid signatures by a key it trusts.  The rule lives in the site's
configuration file, ``/etc/capsa/capsa.conf``, in Apptainer's
``key = value`` style::

    # Refuse images that are not signed by a key of the keyring below.
    require signed images = yes
    # An OpenPGP keyring (binary, as `capsa key export` writes it) or a
    # PEM public key for DSSE signatures.
    signature keyring = /etc/capsa/global-pgp-public

The site's rule binds every user.  What a user brings only adds to it: a
configuration file named with ``--config`` that requires signatures,
``--require-signed KEYRING`` and ``APPTAINER_REQUIRE_SIGNED=KEYRING`` each
add a keyring, and the image must then be signed by a key of *every*
keyring required (a user's own key never stands in for the site's).

How the runtime uses it (before it mounts anything, through the descriptor
the image will be mounted from)::

    policy = load_policy(site, user_config=args.config, keyrings=flags)
    if policy.required:
        enforce(policy, image_path, fd=image_fd)      # SignatureError

:func:`enforce` raises :class:`capsa.errors.SignatureError` with one line
saying why (unsigned, unknown key, altered).  Non-SIF images cannot be
signed, so they are refused too.  This module imports no cryptography until
a check actually runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from capsa.errors import CapsaError, FormatError, NotFoundError, SignatureError, UsageError
from capsa.site import (
    DEFAULT_SETTINGS,
    SiteSettings,
    flag_value,
    read_config,
    read_site_config,
)

REQUIRE_KEY = "require signed images"
KEYRING_KEY = "signature keyring"
GLOBAL_KEYRING_NAME = "global-pgp-public"


@dataclass(frozen=True, slots=True)
class SigningPolicy:
    """The keyrings an image must be signed by, each of them (none: no rule)."""

    keyrings: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return bool(self.keyrings)

    def adding(self, *keyrings: str) -> SigningPolicy:
        """This policy with more requirements (never fewer)."""
        return SigningPolicy(tuple(dict.fromkeys((*self.keyrings, *keyrings))))


def required_keyring(settings: Mapping[str, str], default_keyring: str) -> str | None:
    """The keyring a configuration requires, or None if it requires nothing."""
    if not flag_value(dict(settings), REQUIRE_KEY):
        return None
    return settings.get(KEYRING_KEY) or default_keyring


def site_policy(site: SiteSettings = DEFAULT_SETTINGS) -> SigningPolicy:
    """What the site's ``capsa.conf`` requires."""
    keyring = required_keyring(read_site_config(site), site.path(GLOBAL_KEYRING_NAME))
    return SigningPolicy(() if keyring is None else (keyring,))


def load_policy(site: SiteSettings = DEFAULT_SETTINGS, *,
                user_config: str | os.PathLike[str] | None = None,
                keyrings: Sequence[str] = ()) -> SigningPolicy:
    """The site's policy, tightened by the user's configuration file (which
    may require a keyring, and can relax nothing) and by *keyrings*."""
    policy = site_policy(site)
    if user_config is not None:
        wanted = required_keyring(read_config(user_config), site.path(GLOBAL_KEYRING_NAME))
        if wanted is not None:
            policy = policy.adding(wanted)
    return policy.adding(*keyrings)


def needs_checking(site: SiteSettings, *, user_config: str | None = None,
                   keyrings: Sequence[str] = ()) -> bool:
    """Is there any policy to apply (cheap: the exec path asks first)?"""
    return bool(keyrings) or user_config is not None or os.path.lexists(
        site.path("capsa.conf"))


def check_image(image_path: str | os.PathLike[str], *, fd: int | None = None,
                site: SiteSettings = DEFAULT_SETTINGS, user_config: str | None = None,
                keyrings: Sequence[str] = ()) -> None:
    """Refuse an image the site's policy (tightened by the user's
    configuration and *keyrings*) does not accept; read through *fd*."""
    if not needs_checking(site, user_config=user_config, keyrings=keyrings):
        return
    policy = load_policy(site, user_config=user_config, keyrings=keyrings)
    if policy.required:
        enforce(policy, image_path, fd=fd)


def enforce(policy: SigningPolicy, image_path: str | os.PathLike[str], *,
            fd: int | None = None) -> None:
    """Raise SignatureError unless the image is signed by a key of every
    keyring of *policy* (read through *fd* when given)."""
    for keyring in policy.keyrings:
        enforce_signed(image_path, keyring_path=keyring, fd=fd)


def enforce_signed(image_path: str | os.PathLike[str], *, keyring_path: str,
                   fd: int | None = None) -> None:
    """Raise SignatureError unless *image_path* (or the image open as *fd*,
    which *image_path* then names) is signed by a key in *keyring_path*.

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
        verify_image(image_path, keys, fd=fd)
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
