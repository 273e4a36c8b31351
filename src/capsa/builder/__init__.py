"""``capsa build``: a definition file (or an image) to a SIF file or a
sandbox directory.  Bootstrap agents make the base root filesystem
(:mod:`capsa.builder.agents`), sections run on the host or in a nested
``capsa exec`` (:mod:`capsa.builder.scripts`), :mod:`capsa.builder.build`
drives it all and writes the result atomically."""
