"""``python -m capsa.cli.child FD LEVEL``: launch the container whose spec
the parent process sent on FD (or run the build it sent: see
:mod:`capsa.runtime.child`), reporting at LEVEL as the parent does, and exit
with the container's status."""

from __future__ import annotations

import os
import sys

from capsa.cli import log
from capsa.errors import CapsaError


def main(argv: list[str]) -> int:
    fd, level = int(argv[0]), int(argv[1])
    log.setup(level, colour=True)
    from capsa.cli.signals import cleanup_on_termination, interrupted_status
    from capsa.runtime.child import read_payload

    try:
        # The parent stops us with SIGTERM when it is stopped itself (a
        # build's %post under scancel), maybe while the session is being set
        # up: end as Ctrl-C would, so that its directory and mounts go too.
        with cleanup_on_termination():
            return _run(read_payload(fd))
    except CapsaError as err:
        log.fatal_line(str(err))
        return err.exit_code
    except KeyboardInterrupt as err:
        return interrupted_status(err)


def _run(payload: object) -> int:
    from capsa.runtime.spec import ContainerSpec

    if isinstance(payload, ContainerSpec):
        from capsa.runtime.launcher import launch

        return launch(payload)
    if isinstance(payload, tuple) and payload[:1] == ("build",):
        from capsa.builder.request import build_request

        request, site = payload[1]
        build_request(request, site=site)
        return 0
    raise TypeError(f"nothing to run in {type(payload).__name__}")


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
