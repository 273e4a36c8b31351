"""``capsa registry login|logout|list``: manage OCI registry credentials.

Credentials go to ``~/.apptainer/docker-config.json`` (or ``--authfile``),
mode 0600, in Docker's format; ``pull`` and ``push`` read them from there.
``login`` first checks them against the registry, as Apptainer does.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from capsa.cli import log
from capsa.cli.registry_flags import user_home
from capsa.errors import AuthError, CapsaError, RegistryError, UsageError

if TYPE_CHECKING:
    from capsa.registry import Credentials

HELP = "Manage authentication to OCI/Docker registries"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<command>")
    login = sub.add_parser("login", help="Login to an OCI/Docker registry",
                           prog=f"{parser.prog} login")
    login.add_argument("-u", "--username", help="username to authenticate with")
    login.add_argument("-p", "--password", help="password / token to authenticate with")
    login.add_argument("--password-stdin", action="store_true",
                       help="take password from standard input")
    login.add_argument("--authfile", metavar="FILE",
                       help="docker-style auth file to store the credentials in")
    login.add_argument("--no-https", "--nohttps", dest="no_https", action="store_true",
                       help="talk to the registry over plain http")
    login.add_argument("uri", help="registry URI (docker://host[:port])")
    logout = sub.add_parser("logout", help="Logout from an OCI/Docker registry",
                            prog=f"{parser.prog} logout")
    logout.add_argument("--authfile", metavar="FILE",
                        help="docker-style auth file to remove the credentials from")
    logout.add_argument("uri", nargs="?", help="registry URI (docker://host[:port])")
    listing = sub.add_parser("list", help="List all OCI credentials that are configured",
                             prog=f"{parser.prog} list")
    listing.add_argument("--authfile", metavar="FILE", help="docker-style auth file to read")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action == "login":
        return _login(args)
    if action == "logout":
        return _logout(args)
    if action == "list":
        return _list(args)
    raise UsageError("registry needs a command: login, logout or list "
                     "(see 'capsa registry --help')")


def registry_name(uri: str) -> str:
    """``docker://host[:port][/path]`` (or a bare host) -> ``host[:port][/path]``."""
    text = uri.strip()
    scheme, sep, rest = text.partition("://")
    if sep and scheme not in ("docker", "oras"):
        raise UsageError(f"registry login works with docker:// and oras:// URIs, not {uri!r}")
    rest = rest if sep else text
    parts = urllib.parse.urlsplit(f"//{rest}")
    if not parts.netloc:
        raise UsageError(f"no registry host in {uri!r}")
    return parts.netloc + parts.path.rstrip("/")


def _is_loopback(host: str) -> bool:
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _auth_path(args: argparse.Namespace) -> Path:
    from capsa.registry.credentials import CredentialStore

    authfile = Path(args.authfile) if getattr(args, "authfile", None) else None
    return CredentialStore(authfile=authfile, home=user_home()).write_file()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        data = sys.stdin.read()
        return data.removesuffix("\n").removesuffix("\r")
    password = args.password
    if password:
        return str(password)
    if not sys.stdin.isatty():
        raise UsageError("a password is required (--password, --password-stdin)")
    import getpass

    password = getpass.getpass("Password / Token: ")
    if not password:
        raise UsageError("a password is required")
    return password


def _login(args: argparse.Namespace) -> int:
    from capsa.registry import Credentials
    from capsa.registry.credentials import AuthFile

    name = registry_name(args.uri)
    username = args.username
    try:
        if not username:
            raise UsageError("Docker/OCI registry requires a username")
        creds = Credentials(username, _read_password(args))
        host = name.split("/", 1)[0]
        _check_login(host, creds, args.no_https)
        path = _auth_path(args)
        AuthFile(path).store(name, creds)
        if not args.authfile:
            _private_dir(path.parent)
    except CapsaError as err:
        raise type(err)(f"while login to {args.uri}: {err}") from err
    log.info(f"Token stored in {path}")
    return 0


def _private_dir(path: Path) -> None:
    """~/.apptainer holds secrets: keep it 0700, as Apptainer does."""
    try:
        os.chmod(path, 0o700)
    except OSError as err:
        log.warning(f"Couldn't enforce permission 0700 on {path}: {err.strerror}")


def _check_login(host: str, creds: Credentials, no_https: bool) -> None:
    """Verify *creds* against *host*.  Loopback registries may be plain
    HTTP: like Apptainer's login check (go-containerregistry), try HTTPS
    first and fall back to HTTP when HTTPS can not be spoken at all."""
    from capsa.registry import RegistryOptions, open_client

    schemes = [True] if no_https else [False, True] if _is_loopback(host) else [False]
    for plain in schemes:
        with open_client(RegistryOptions(no_https=plain)) as client:
            try:
                client.check_login(host, creds)
                return
            except AuthError:
                raise
            except RegistryError:
                if plain or len(schemes) == 1:
                    raise


def _logout(args: argparse.Namespace) -> int:
    from capsa.registry.credentials import AuthFile

    if not args.uri:
        raise UsageError("registry logout needs the registry URI (docker://host)")
    AuthFile(_auth_path(args)).remove(registry_name(args.uri))
    log.info("Logout succeeded")
    return 0


def _list(args: argparse.Namespace) -> int:
    from capsa.registry.credentials import AuthFile

    hosts = sorted(set(AuthFile(_auth_path(args)).hosts()))
    rows = [("URI", "SECURE?")] + [(f"docker://{host}", "\u2713") for host in hosts]
    width = max(len(uri) for uri, _ in rows) + 2
    lines = [""] + [f"{uri:<{width}}{secure}" for uri, secure in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
