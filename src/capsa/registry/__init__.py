"""Talking to OCI registries: from a reference to verified blobs.

Typical use (what ``capsa pull`` does)::

    from capsa.reference import parse_reference
    from capsa.registry import RegistryOptions, open_client

    options = RegistryOptions(no_https=True, home=Path.home())  # the CLI fills it
    with open_client(options) as client:
        image = client.resolve(parse_reference("docker://alpine"), platform=None)
        image.manifest.digest          # cache key (with image.platform)
        config = client.fetch_blob_bytes(image.reference, image.config)
        for layer in image.layers:     # thread-safe: use a pool for parallel downloads
            with open(tmp, "wb") as out:
                client.fetch_blob(image.reference, layer, out, progress=callback)

API:

- :class:`RegistryOptions` - the CLI-facing options, one frozen dataclass
  (``--no-https``/``APPTAINER_NOHTTPS``, ``--docker-login`` or
  ``APPTAINER_DOCKER_USERNAME/PASSWORD`` as ``credentials``,
  ``--authfile``, the home directory holding the default auth files, the
  registries.conf paths).  :func:`open_client` turns it into a client with
  the real HTTP transport.  ``capsa.cli.registry_flags`` adds the flags to
  a parser and builds the options from ``args`` and the environment.
- :class:`RegistryClient` ``(transport, credentials, config, *, no_https)``:

  - ``resolve(ref, platform=None, *, config_types=IMAGE_CONFIG_TYPES) ->
    ResolvedImage``: search registries, mirrors, index/manifest-list
    platform selection (default: the host's).  ``config_types=None``
    accepts artifacts (``oras://`` SIFs).  Errors: :class:`NotFoundError`
    (unknown repository/tag; a missing platform, naming those there are),
    :class:`AuthError` (401: says to run ``capsa registry login``),
    :class:`RegistryError` (unreachable, rate limit, HTTP errors),
    :class:`FormatError` (not an image, malformed manifest),
    :class:`DigestMismatchError`.
  - ``fetch_blob(ref, desc, out, progress=None)``: streams into ``out``
    through :class:`~capsa.digest.VerifyingReader`; on a mismatch ``out``
    is emptied and :class:`DigestMismatchError` raised.
  - ``fetch_blob_bytes(ref, desc, limit)``: small blobs (configs).
  - ``fetch_manifest(ref) -> (Descriptor, bytes, dict)``.
  - ``push_blob(ref, desc, source)``, ``push_manifest(ref, media_type,
    data) -> Descriptor``, ``blob_exists(ref, digest)`` (for ``push``).
  - ``check_login(host, credentials)`` (``registry login``).
- Robustness: reads (GET/HEAD) are retried on 5xx and broken connections
  (``client.retries``, ``client.retry_delay``); a blob whose connection
  breaks is restarted from zero; redirects to blob stores never carry the
  registry credentials.  Credentials: explicit, else ``--authfile``, else
  ``~/.apptainer/docker-config.json`` then ``~/.docker/config.json``
  (``credHelpers``/``credsStore`` helpers are asked too).
- :class:`ResolvedImage`: ``reference`` (where it was found), ``manifest``
  (descriptor), ``manifest_bytes``, ``config``, ``layers``, ``platform``,
  ``index``, ``annotations``.
- :mod:`capsa.registry.manifest` is the one parser of descriptors,
  manifests and indexes and the one platform selector
  (:func:`~capsa.registry.manifest.select_manifest`, containers/image's
  variant rules) for every OCI source, ``oci:`` layouts included;
  :func:`~capsa.registry.manifest.config_platform` reads an image config's
  platform.
- Tests: ``MemoryRegistry`` (``tests/support/memory_registry.py``) is an
  in-memory registry that is also a :class:`Transport`.

Modules: ``transport`` (the one network choke point), ``auth`` (sans-I/O
challenges and tokens), ``credentials`` (auth files), ``config``
(registries.conf), ``manifest`` (parsing, platforms), ``client``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from capsa.registry.client import RegistryClient, ResolvedImage
from capsa.registry.config import RegistriesConfig
from capsa.registry.credentials import Credentials, CredentialStore
from capsa.registry.manifest import IMAGE_CONFIG_TYPES, host_platform, parse_platform
from capsa.registry.transport import Transport

__all__ = [
    "IMAGE_CONFIG_TYPES",
    "CredentialStore",
    "Credentials",
    "RegistriesConfig",
    "RegistryClient",
    "RegistryOptions",
    "ResolvedImage",
    "Transport",
    "host_platform",
    "open_client",
    "parse_platform",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryOptions:
    """How to reach registries, as the command line and environment say.

    ``registries_conf``: the registries.conf files to read, in order
    (``None``: none, i.e. plain Docker defaults; the CLI passes
    :func:`capsa.registry.config.default_paths`).
    """

    no_https: bool = False
    credentials: Credentials | None = None
    authfile: Path | None = None
    home: Path | None = None
    registries_conf: tuple[Path, ...] | None = None
    verify_tls: bool = True
    timeout: float = 60.0

    def credential_store(self) -> CredentialStore:
        return CredentialStore(self.credentials, self.authfile, self.home)


def registry_options(*, no_https: bool = False, username: str | None = None,
                     password: str | None = None, authfile: str | None = None,
                     home: Path | None = None,
                     environ: Mapping[str, str] | None = None) -> RegistryOptions:
    """The options a caller asks for: a username and password are a
    credential together (a username alone is anonymous, as in Apptainer);
    *environ* locates registries.conf (``CONTAINERS_REGISTRIES_CONF``)."""
    import os
    import pwd

    from capsa.errors import UsageError
    from capsa.registry.config import default_paths

    if password and not username:
        raise UsageError("a docker password was given without a username "
                         "(set APPTAINER_DOCKER_USERNAME too)")
    if home is None:
        try:
            home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
        except KeyError:
            from capsa.userdirs import home as env_home

            home = Path(env_home(environ))
    credentials = Credentials(username, password) if username and password is not None \
        else None
    return RegistryOptions(no_https=no_https, credentials=credentials,
                           authfile=Path(authfile) if authfile else None, home=home,
                           registries_conf=tuple(default_paths(
                               home, os.environ if environ is None else environ)))


def open_client(options: RegistryOptions, transport: Transport | None = None) -> RegistryClient:
    """A client for *options*, on the real HTTP transport unless given one."""
    from capsa.registry import config

    if transport is None:
        from capsa.registry.transport import HTTPTransport

        transport = HTTPTransport(timeout=options.timeout, verify_tls=options.verify_tls)
    loaded = config.load(options.registries_conf) if options.registries_conf else None
    return RegistryClient(transport, options.credential_store(), loaded,
                          no_https=options.no_https)
