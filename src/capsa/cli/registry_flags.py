"""The registry flags that ``pull``, ``build``, ``push`` and ``registry``
share, and turning them plus the environment into
:class:`capsa.registry.RegistryOptions` (the library never reads the
environment itself).

``add_registry_flags(parser)`` adds ``--docker-login``, ``--no-https``
(and the deprecated ``--nohttps``), ``--authfile`` and the hidden
``--docker-username``/``--docker-password``; ``registry_options(args)``
builds the options, honouring ``APPTAINER_DOCKER_USERNAME``,
``APPTAINER_DOCKER_PASSWORD`` (and plain ``DOCKER_USERNAME``,
``DOCKER_PASSWORD``), ``APPTAINER_DOCKER_LOGIN``,
``APPTAINER_NOHTTPS``/``APPTAINER_NO_HTTPS`` (and ``SINGULARITY_*``) and
``CONTAINERS_REGISTRIES_CONF``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from capsa.errors import UsageError

if TYPE_CHECKING:
    from capsa.registry import Credentials, RegistryOptions

def user_home() -> Path:
    """The home directory from the password database: clients such as
    nextflow run us with an empty environment (no ``HOME``)."""
    try:
        return Path(pwd.getpwuid(os.geteuid()).pw_dir)
    except KeyError:
        from capsa.userdirs import home

        return Path(home())


def add_registry_flags(parser: argparse.ArgumentParser, *, login: bool = True) -> None:
    parser.add_argument("--no-https", "--nohttps", dest="no_https", action="store_true",
                        help="use http instead of https for docker:// and oras:// URIs")
    parser.add_argument("--authfile", metavar="FILE",
                        help="docker-style auth file to use for credentials")
    if login:
        parser.add_argument("--docker-login", action="store_true",
                            help="login to a Docker Repository interactively")
        parser.add_argument("--docker-username", help=argparse.SUPPRESS)
        parser.add_argument("--docker-password", help=argparse.SUPPRESS)


def _prompt_credentials(username: str | None) -> Credentials:
    """Ask for the password, and for the username unless one was given (as
    Apptainer does for ``--docker-login``)."""
    import getpass

    from capsa.registry import Credentials

    if not sys.stdin.isatty():
        raise UsageError("--docker-login needs a terminal to ask for the username and password")
    if not username:
        sys.stderr.write("Enter Docker Username: ")
        sys.stderr.flush()
        username = sys.stdin.readline().strip()
    password = getpass.getpass("Enter Docker Password: ")
    return Credentials(username, password)


def explicit_credentials(args: argparse.Namespace) -> Credentials | None:
    """The credentials the flags (or the variables that stand for them:
    ``APPTAINER_DOCKER_USERNAME``, plain ``DOCKER_USERNAME``...) give."""
    from capsa.registry import Credentials

    username = getattr(args, "docker_username", None)
    password = getattr(args, "docker_password", None)
    if getattr(args, "docker_login", False):
        return _prompt_credentials(username)
    if username:
        # a username alone is no credential (Apptainer wants both): anonymous
        return Credentials(username, password) if password is not None else None
    if password:
        raise UsageError("a docker password was given without a username "
                         "(set APPTAINER_DOCKER_USERNAME too)")
    return None


def registry_options(args: argparse.Namespace, env: Mapping[str, str] | None = None,
                     home: Path | None = None) -> RegistryOptions:
    """The options *args* (with :func:`add_registry_flags`) ask for; *env*
    only locates registries.conf (``XDG_CONFIG_HOME``...)."""
    from capsa.registry import RegistryOptions
    from capsa.registry.config import default_paths

    env = os.environ if env is None else env
    home = home or user_home()
    authfile = getattr(args, "authfile", None)
    return RegistryOptions(
        no_https=bool(getattr(args, "no_https", False)),
        credentials=explicit_credentials(args),
        authfile=Path(authfile) if authfile else None,
        home=home,
        registries_conf=tuple(default_paths(home, env)),
    )
