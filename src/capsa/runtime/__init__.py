"""The container runtime: image -> mount plan -> namespaces -> exec.

Nothing here imports the build, pull or registry stages; the exec hot path
imports only :mod:`capsa.runtime.spec`, :mod:`~capsa.runtime.launcher` and
what they need.
"""
