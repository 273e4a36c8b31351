"""What the site decides: settings no user can loosen.

The administrator's word lives in capsa's configuration directory,
``/etc/capsa`` (``capsa.conf``, the global keyring, GPU library lists).  It
binds every user: flags, environment variables and files a user names may
*add* requirements (another keyring, another trusted cache user), never take
one of the site's away.  So nothing here is read from the environment.

:class:`SiteSettings` is what the CLI hands to the library: where that
directory is and how this host's images are mounted.  The shipped CLI
always uses the defaults; tests (and only tests, through their own entry
point) pass other values, e.g. a fake GPU driver tree, through the same
object rather than through environment switches a user could set too.

:func:`read_site_config` reads ``capsa.conf`` only if the site can be the
only one to have written it: owned by root (or by whoever runs capsa, for an
installation of their own) and writable by nobody else, in a directory
nobody else can replace it in.  Anything else is a FATAL error: a weakened
policy must not pass for the site's.

This module is on the exec path: it imports only ``os`` and ``stat``.
"""

from __future__ import annotations

import os
import stat

from capsa.errors import EnvironmentFailure, FormatError, NotFoundError
from capsa.record import Record

DEFAULT_CONFIG_DIR = "/etc/capsa"
CONFIG_NAME = "capsa.conf"
_TRUE = ("yes", "true", "1", "on")
_FALSE = ("no", "false", "0", "off", "")


class SiteSettings(Record):
    """The site's settings for one run of capsa."""

    config_dir: str = DEFAULT_CONFIG_DIR
    gpu_root: str = "/"  # the host tree the GPU driver's files are found in
    ldconfig: str | None = None  # the program printing the linker cache (None: ldconfig)
    fuse: bool = True  # mount images (FUSE, loop devices); False: always extract them
    overlay: bool = True  # lay a kernel overlay over the image

    def path(self, name: str) -> str:
        """A file of the site's configuration directory."""
        return os.path.join(self.config_dir, name)


DEFAULT_SETTINGS = SiteSettings()


def read_config(path: str | os.PathLike[str], *, required: bool = True) -> dict[str, str]:
    """``key = value`` pairs of a configuration file (keys lower-cased, spaces
    folded).  A missing file is :class:`NotFoundError` when *required*, else
    no settings."""
    try:
        with open(path, encoding="utf-8") as conf:
            lines = conf.read(1 << 20).splitlines()
    except FileNotFoundError:
        if not required:
            return {}
        raise NotFoundError(f"configuration file {os.fspath(path)} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(f"unable to read configuration file {os.fspath(path)}: {err}") \
            from None
    settings = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if "=" not in text:
            raise FormatError(f"{os.fspath(path)}:{number}: expected 'key = value'")
        key, value = text.split("=", 1)
        settings[" ".join(key.lower().split())] = value.strip()
    return settings


def read_site_config(settings: SiteSettings = DEFAULT_SETTINGS) -> dict[str, str]:
    """The site's ``capsa.conf`` (no settings if there is none), refused
    unless only the site can have written it."""
    path = settings.path(CONFIG_NAME)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise EnvironmentFailure(f"site configuration {path}: {err.strerror}") from None
    check_site_owned(path, info)
    check_site_owned(settings.config_dir, os.stat(settings.config_dir))
    return read_config(path)


def check_site_owned(path: str, info: os.stat_result) -> None:
    """Raise unless *path* (with *info*) can only have been written by the
    site: owned by root or by the caller, not writable by others (a
    directory may be, with the sticky bit, as ``/tmp`` is)."""
    if info.st_uid not in (0, os.geteuid()):
        raise EnvironmentFailure(f"site configuration {path} is owned by uid "
                                 f"{info.st_uid}, not by root: refusing to use it")
    loose = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if loose and not (stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX):
        raise EnvironmentFailure(f"site configuration {path} is writable by other users: "
                                 "refusing to use it")


def flag_value(settings: dict[str, str], key: str) -> bool:
    """A yes/no setting; absent is no."""
    value = settings.get(key, "no").lower()
    if value not in _TRUE + _FALSE:
        raise FormatError(f"invalid value for '{key}': {value!r} (want yes or no)")
    return value in _TRUE


def name_list(settings: dict[str, str], key: str) -> tuple[str, ...]:
    """A comma- or space-separated list setting."""
    return tuple(n for n in settings.get(key, "").replace(",", " ").split() if n)
