"""Running a container in a child process of its own.

A container's start unshares namespaces, which a process can do only while
it has a single thread.  A caller with threads of its own (the build, which
watches its disk space meanwhile; a workflow engine calling the library)
runs it here instead: the request becomes its spec in this process, the
spec goes down a pipe to a fresh interpreter running :data:`PROGRAM` (the
CLI's entry for it, which reports as the CLI does), and that child launches
it on this process's standard streams.  Its exit status comes back; if this
process is stopped meanwhile, the child gets SIGTERM and a moment to clean
up before SIGKILL.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys

from capsa import children, report
from capsa.runtime.request import ContainerRequest, Host, container_spec
from capsa.runtime.spec import ContainerSpec
from capsa.site import DEFAULT_SETTINGS, SiteSettings

# The program that launches a pickled spec: ``PROGRAM FD LEVEL``.
PROGRAM = (sys.executable, "-m", "capsa.cli.child")
_GRACE = 10.0


def run_in_child(request: ContainerRequest, site: SiteSettings = DEFAULT_SETTINGS) -> int:
    """Check *request* here, run it in a child process; its exit status."""
    return run_spec_in_child(container_spec(request, Host.current(site)))


def run_spec_in_child(spec: ContainerSpec) -> int:
    """Run *spec* (checked already) in a child process; its exit status.
    The image's descriptor (what was checked) goes to the child as it is."""
    from capsa.runtime.image import close

    try:
        image_fd = (spec.image.fd,) if spec.image.fd >= 0 else ()
        return run_in_program(spec, keep_fds=image_fd)
    finally:
        close(spec.image)


def run_in_program(payload: object, program: tuple[str, ...] = PROGRAM,
                   keep_fds: tuple[int, ...] = ()) -> int:
    """Hand *payload* (a :class:`ContainerSpec`, or another job the program
    knows) to a fresh *program*, which also gets *keep_fds*; its exit status."""
    read_end, write_end = os.pipe()
    try:
        child = children.spawn([*program, str(read_end), str(report.level())],
                               keep_fds=(read_end, *keep_fds), stdio=True,
                               env=_same_capsa())
    finally:
        os.close(read_end)
    try:
        with os.fdopen(write_end, "wb") as out:
            pickle.dump(payload, out)
        return child.wait()
    finally:
        if child.status is None:
            child.stop(signal.SIGTERM, grace=_GRACE)


def read_payload(fd: int) -> object:
    """In the child: what its parent sent (trusted: our own parent)."""
    with os.fdopen(fd, "rb") as source:
        return pickle.load(source)


def _same_capsa() -> dict[str, str]:
    """Our environment, with this capsa first on the child's module path (the
    program must be the same capsa as its parent, wherever that one came from)."""
    import capsa
    from capsa.proc import child_env

    ours = os.path.dirname(os.path.dirname(os.path.abspath(capsa.__file__)))
    path = os.pathsep.join(filter(None, [ours, child_env().get("PYTHONPATH", "")]))
    return child_env(PYTHONPATH=path)
