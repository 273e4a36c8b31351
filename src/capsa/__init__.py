"""capsa: an Apptainer-compatible, rootless container system for HPC.

Data flows one way: reference -> registry or bootstrap -> layers -> rootfs
tree -> squashfs -> SIF -> runtime.  Each stage is a subpackage that imports
only earlier ones.  The library never prints or exits: it raises from the
tree in :mod:`capsa.errors` and reports progress through :mod:`logging`
(logger ``capsa``); only :mod:`capsa.cli` turns those into messages and exit
codes.
"""

__version__ = "1.0.0"

__all__ = ["__version__"]
