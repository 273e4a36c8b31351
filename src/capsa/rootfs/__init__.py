"""From image layers to one root filesystem, as a tar stream: hostile-tar
sanitising, the whiteout plan across layers, and Apptainer's
``/.singularity.d`` metadata tree.  Nothing here extracts to disk."""
