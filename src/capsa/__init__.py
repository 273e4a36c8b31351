"""capsa: an Apptainer-compatible, rootless container system for HPC.

Data flows one way: reference -> registry or bootstrap -> layers -> rootfs
tree -> squashfs -> SIF -> runtime.  Each stage is a subpackage that imports
only earlier ones.  The library never prints or exits: it raises from the
tree in :mod:`capsa.errors` and reports progress through :mod:`logging`
(logger ``capsa``); only :mod:`capsa.cli` turns those into messages and exit
codes.
"""

__version__ = "1.0.0"

# The Apptainer command-line level capsa implements.  ``apptainer --version``
# reports it (with capsa's own version as a build suffix) because clients
# gate features on it: cwltool uses ``run --no-eval`` from 1.1 on, Snakemake
# requires 1.0.0.  ``capsa --version`` reports ``__version__``.
APPTAINER_VERSION = "1.4.5"

__all__ = ["APPTAINER_VERSION", "__version__"]
