"""capsa: an Apptainer-compatible, rootless container system for HPC.

As a library (:mod:`capsa.api`, re-exported here)::

    import capsa

    capsa.pull(capsa.PullRequest("docker://alpine:3.20", dest="alpine.sif"))
    status = capsa.run(capsa.ContainerRequest("alpine.sif", args=("true",)))

Data flows one way: reference -> registry or bootstrap -> layers -> rootfs
tree -> squashfs -> SIF -> runtime -> build.  Each stage is a subpackage
that imports only earlier ones.  The library never prints or exits: it
raises from the tree in :mod:`capsa.errors` and reports progress through
:mod:`capsa.report`; only :mod:`capsa.cli` turns those into messages and
exit codes.

The names below are loaded on first use: ``capsa exec`` imports this
package too, and must not pay for the API it does not use.
"""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"

# The Apptainer command-line level capsa implements.  ``apptainer --version``
# reports it (with capsa's own version as a build suffix) because clients
# gate features on it: cwltool uses ``run --no-eval`` from 1.1 on, Snakemake
# requires 1.0.0.  ``capsa --version`` reports ``__version__``.
APPTAINER_VERSION = "1.4.5"

# public name -> the module it lives in
_PUBLIC = {
    "pull": "capsa.api", "build": "capsa.api", "run": "capsa.api", "exec": "capsa.api",
    "inspect": "capsa.api", "verify": "capsa.api", "start_instance": "capsa.api",
    "instances": "capsa.api", "stop_instance": "capsa.api",
    "ContainerRequest": "capsa.runtime.request", "PullRequest": "capsa.pulling",
    "PullResult": "capsa.pulling", "BuildRequest": "capsa.builder.request",
    "ImageMetadata": "capsa.runtime.metadata", "VerifyResult": "capsa.integrity.verify",
    "Instance": "capsa.runtime.instance", "SiteSettings": "capsa.site",
    "CapsaError": "capsa.errors",
}

__all__ = ["APPTAINER_VERSION", "__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'capsa' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
