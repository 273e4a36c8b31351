"""Playing the site's administrator in CLI tests, through the CLI's own seam.

``capsa`` takes its :class:`capsa.site.SiteSettings` from nowhere a user
could change; a test passes ``env=site_env(fuse=False)`` (merged with any
other variables) and :class:`support.cli.Capsa` then runs the test entry
point :mod:`support.site_entry`, which hands those settings to the CLI's
``main``.
"""

from __future__ import annotations

import json

from support.site_entry import VARIABLE

ENTRY_MODULE = "capsa_site_entry"


def site_env(**settings: object) -> dict[str, str]:
    """The environment that makes :class:`support.cli.Capsa` run capsa with
    these :class:`capsa.site.SiteSettings` fields (``fuse``, ``overlay``,
    ``gpu_root``, ``ldconfig``, ``config_dir``)."""
    return {VARIABLE: json.dumps(settings)}


def wants_site(env: dict[str, str]) -> bool:
    return VARIABLE in env
