"""The command line: the only place that reads the environment for options,
prints messages and chooses exit codes."""
