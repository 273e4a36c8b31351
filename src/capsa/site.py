"""Where the site's configuration lives: ``/etc/capsa``, or ``$CAPSA_CONFDIR``
(relocatable installs and tests).  One definition for the signing policy
(``capsa.conf``) and the global keyring, which the exec path must find
without importing :mod:`capsa.integrity`."""

from __future__ import annotations

import os

DEFAULT_CONFIG_DIR = "/etc/capsa"


def config_dir() -> str:
    return os.environ.get("CAPSA_CONFDIR", DEFAULT_CONFIG_DIR)
