"""The one error tree of capsa.

Library code raises these; only :mod:`capsa.cli` turns them into a ``FATAL``
line and an exit code (255 unless the error says otherwise)::

    CapsaError
     +-- UsageError            bad flags, arguments or option values
     +-- NotFoundError         a file, image, object, key or command is missing
     +-- AlreadyExistsError    refusing to overwrite something
     +-- FormatError           hostile or malformed input (SIF, tar, JSON, deffile)
     |    +-- SifFormatError
     |    +-- DigestMismatchError
     +-- RegistryError         talking to an OCI registry failed
     |    +-- AuthError
     +-- SignatureError        signing or verification failed
     +-- ContainerError        setting up or starting a container failed
     +-- ToolError             an external program failed or is missing
     +-- EnvironmentFailure    a capability of this host is missing
          +-- NoSpaceError     a filesystem filled up (names where, and what to set)

Every error carries a one-line, human message (``str(err)``).
"""

from __future__ import annotations


class CapsaError(Exception):
    """Base of every error capsa raises on purpose."""

    exit_code: int = 255


class UsageError(CapsaError):
    """The caller asked for something malformed (flags, arguments, values)."""


class NotFoundError(CapsaError):
    """Something named by the caller does not exist."""


class AlreadyExistsError(CapsaError):
    """Refusing to overwrite an existing file or entry."""


class FormatError(CapsaError):
    """Input data is malformed or hostile."""


class SifFormatError(FormatError):
    """A file is not a valid SIF image."""


class DigestMismatchError(FormatError):
    """Content does not match the digest or size it was announced with."""


class RegistryError(CapsaError):
    """An OCI registry answered with an error or could not be reached."""


class AuthError(RegistryError):
    """The registry refused our credentials, or we have none."""


class SignatureError(CapsaError):
    """Signing failed, or a signature does not verify."""


class ContainerError(CapsaError):
    """The container could not be set up or started."""


class ToolError(CapsaError):
    """An external program is missing or failed."""


class EnvironmentFailure(CapsaError):
    """The host lacks a capability that the operation needs."""


class NoSpaceError(EnvironmentFailure):
    """A filesystem ran out of space; the message names the directory and
    the variable that moves it (``APPTAINER_TMPDIR``...)."""
