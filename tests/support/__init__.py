"""Shared test machinery: paths, capability probes, and running the CLI as
root or as an unprivileged user."""
