"""Image references (``docker://[host[:port]/]name[:tag][@digest]``) parsed
and normalised as Docker does.

``alpine`` is ``docker.io/library/alpine:latest``; the first path component
names a registry only if it looks like a host (has a ``.`` or a ``:``, is
``localhost``, or has upper-case letters); ``index.docker.io`` is
``docker.io``.  A reference without a host is *unqualified*: the registry
configuration may search other registries for it
(:meth:`capsa.registry.config.RegistriesConfig.candidates`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from capsa.errors import UsageError

DOCKER_HUB = "docker.io"
# Where Docker Hub's API lives; ``docker.io`` itself only redirects.
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Fa-f0-9]{32,}$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
_MAX_NAME = 255
_SCHEMES = ("docker://", "oras://")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference.

    ``registry`` is the host as written (``docker.io`` for Docker Hub),
    ``repository`` the path (``library/alpine``), ``tag`` and ``digest`` as
    given (``tag`` is ``latest`` when neither was given).  ``qualified``
    says whether the user named the registry.
    """

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None
    qualified: bool = True

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry's manifest endpoint for: digest, else tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def short_name(self) -> str:
        """The last path component (``alpine``), for default file names."""
        return self.repository.rsplit("/", 1)[-1]

    @property
    def api_host(self) -> str:
        """The host that serves the registry API (Docker Hub's differs)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_location(self, registry: str, repository: str) -> Reference:
        """The same tag and digest at another place (mirrors, rewrites)."""
        return Reference(registry, repository, self.tag, self.digest, True)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def strip_scheme(text: str) -> str:
    """*text* without a leading ``docker://`` (or ``oras://``)."""
    for scheme in _SCHEMES:
        if text.startswith(scheme):
            return text[len(scheme):]
    return text


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" \
        or component != component.lower()


def split_host(remainder: str) -> tuple[str | None, str]:
    """``(host or None, path)`` following Docker's rule for the first part."""
    first, sep, rest = remainder.partition("/")
    if sep and _looks_like_host(first):
        return first, rest
    return None, remainder


def normalise_host(host: str) -> str:
    """``index.docker.io`` and friends are ``docker.io``; hosts are lower case."""
    host = host.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _split_digest(text: str) -> tuple[str, str | None]:
    name, sep, digest = text.partition("@")
    if not sep:
        return text, None
    if not _DIGEST.match(digest):
        raise UsageError(f"invalid digest in image reference: {digest!r}")
    return name, digest


def _split_tag(text: str) -> tuple[str, str | None]:
    # A tag follows the last ':' after the last '/' (host ports come earlier).
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon <= slash:
        return text, None
    tag = text[colon + 1:]
    if not _TAG.match(tag):
        raise UsageError(f"invalid tag in image reference: {tag!r}")
    return text[:colon], tag


def parse_reference(text: str) -> Reference:
    """Parse ``[docker://][host[:port]/]name[:tag][@digest]``.

    Raises :class:`UsageError` with one clear line when *text* is not a
    valid reference.
    """
    original = text
    text = strip_scheme(text.strip())
    if not text:
        raise UsageError(f"invalid image reference {original!r}: empty name")
    rest, digest = _split_digest(text)
    rest, tag = _split_tag(rest)
    host, path = split_host(rest)
    if host is not None and not _HOST.match(host):
        raise UsageError(f"invalid registry host in image reference {original!r}: {host!r}")
    registry = normalise_host(host) if host else DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _REPOSITORY.match(path):
        detail = "repository name must be lowercase" if path != path.lower() else \
            "invalid repository name"
        raise UsageError(f"invalid image reference {original!r}: {detail}")
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise UsageError(f"invalid image reference {original!r}: name longer than 255")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest, qualified=host is not None)
