"""``capsa`` as the tests run it when they play the site's administrator.

The shipped entry points (``capsa``, ``apptainer``, ``singularity``) call
:func:`capsa.cli.main.main` with the default :class:`capsa.site.SiteSettings`
and read no test switch from the environment.  Tests that need another site
(a fake GPU driver tree, images never mounted, another configuration
directory) run this program instead: the same ``main``, handed the settings
named in ``CAPSA_TEST_SITE`` (JSON, see :func:`support.site.site_env`).

It is copied next to the ``capsa`` package of the test copy of the sources
(as ``capsa_site_entry``), so that the unprivileged test user can run it.
"""

from __future__ import annotations

import json
import os
import sys

from capsa.cli.main import main
from capsa.site import SiteSettings

VARIABLE = "CAPSA_TEST_SITE"


def settings() -> SiteSettings:
    """The settings the test asked for (left in the environment: the nested
    capsa a build runs for %post is this program again, see
    :func:`capsa.builder.scripts.ContainerOptions`)."""
    return SiteSettings(**json.loads(os.environ.get(VARIABLE, "{}")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], settings()))
