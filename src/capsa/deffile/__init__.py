"""Definition files: the model and the parser (pure, no I/O)."""
