"""``capsa instance start|run|stop|list|stats``, and ``exec|run|shell instance://NAME``.

``start`` and ``run`` take every flag of ``exec`` (binds, ``--contain``,
``--nv``, the environment...) and build the same ContainerSpec; the runtime
(:mod:`capsa.runtime.instance_process`) runs it detached.  ``list`` prints
what spython and singularity-compose parse (``--json``: ``{"instances":
[{"instance", "pid", "img", "ip", "logErrPath", "logOutPath"}]}``, exit 0
even when empty).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from capsa import report
from capsa.cli.commands import actions
from capsa.errors import ContainerError, NotFoundError, UsageError

HELP = "Manage containers running as services"

log = report.getLogger("capsa.cli.instance")

_PREFIX = "instance://"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<command>")
    for name, what in (("start", "startscript"), ("run", "runscript")):
        start = sub.add_parser(name, help=f"Start a named instance running its {what}")
        start.add_argument("--pid-file", metavar="FILE",
                           help="write instance PID to the file with the given name")
        actions.configure(start)
    listing = sub.add_parser("list", help="List all running and named instances")
    listing.add_argument("-j", "--json", action="store_true",
                         help="print structured json instead of list")
    listing.add_argument("-l", "--logs", action="store_true",
                         help="display location of stdout and stderr log files for instances")
    listing.add_argument("-u", "--user", metavar="USER",
                         help="if running as root, list instances from USER")
    listing.add_argument("name", nargs="?", default="*", help="instance name or glob")
    stop = sub.add_parser("stop", help="Stop a named instance of a given container image")
    stop.add_argument("-a", "--all", action="store_true", help="stop all user's instances")
    stop.add_argument("-F", "--force", action="store_true", help="force kill instance")
    stop.add_argument("-s", "--signal", metavar="SIGNAL", help="signal sent to the instance")
    stop.add_argument("-t", "--timeout", type=int, default=10, metavar="SECONDS",
                      help="force kill non stopped instances after X seconds")
    stop.add_argument("-u", "--user", metavar="USER",
                      help="if running as root, stop instances belonging to USER")
    stop.add_argument("name", nargs="?", help="instance name or glob")
    stats = sub.add_parser("stats", help="Get stats for a named instance")
    stats.add_argument("-j", "--json", action="store_true", help=argparse.SUPPRESS)
    stats.add_argument("--no-stream", action="store_true", help=argparse.SUPPRESS)
    stats.add_argument("name", help="instance name")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action in ("start", "run"):
        return _start(args, startscript=action == "start")
    if action == "list":
        return _list(args)
    if action == "stop":
        return _stop(args)
    if action == "stats":
        from capsa.runtime.instance import get_instance

        get_instance(args.name)
        raise ContainerError("stats are only available if cgroups are enabled, see the "
                             "Apptainer instance user guide for instructions")
    raise UsageError("instance requires a command: start, run, stop, list or stats")


# -- start / run ----------------------------------------------------------------

def _start(args: argparse.Namespace, *, startscript: bool) -> int:
    from capsa.runtime.instance import check_name
    from capsa.runtime.instance_process import start_request
    from capsa.runtime.request import Host

    if not args.args:
        raise UsageError("requires at least 2 arg(s), only received 1")
    name = args.args.pop(0)
    check_name(name)
    args.command = "start" if startscript else "run"
    if actions._is_uri(args.image):
        from capsa.cli.signals import cleanup_on_termination

        with cleanup_on_termination():
            actions.pull_uri(args)  # the image held open, its file already gone
    pid = start_request(actions.request_from_args(args), name, Host.current(args.site),
                        check=lambda spec: actions.enforce_signing_policy(args, spec))
    log.info("instance started successfully")
    pid_file = args.pid_file
    if pid_file:
        _write_pid_file(pid_file, pid)
    return 0


def _write_pid_file(path: str, pid: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(f"{pid}\n")
    except OSError as err:
        log.warning("Failed to write pid file: could not create pid file: %s", err.strerror)


# -- list -----------------------------------------------------------------------

def _check_user(user: str | None, verb: str) -> None:
    if user and os.getuid() != 0:
        raise UsageError(f"Only root user can {verb} user's instances")


def _list(args: argparse.Namespace) -> int:
    from capsa.runtime.instance import list_instances

    _check_user(args.user, "list")
    if args.json and args.logs:
        raise UsageError("more than one flags have been set")
    found = list_instances(args.name, args.user)
    if args.json:
        rows = [{"instance": i.name, "pid": i.pid, "img": i.image, "ip": i.ip,
                 "logErrPath": i.log_err, "logOutPath": i.log_out} for i in found]
        sys.stdout.write(json.dumps({"instances": rows}, indent="\t") + "\n")
    elif args.logs:
        table = [["INSTANCE NAME", "PID", "LOGS"]]
        for i in found:
            table += [[i.name, str(i.pid), i.log_err], ["", "", i.log_out]]
        sys.stdout.write(tabulate(table))
    else:
        table = [["INSTANCE NAME", "PID", "IP", "IMAGE"]]
        table += [[i.name, str(i.pid), i.ip, i.image] for i in found]
        sys.stdout.write(tabulate(table))
    return 0


def tabulate(rows: list[list[str]]) -> str:
    """Columns as Go's tabwriter (padding 4) aligns them; the last cell of a
    row is not padded."""
    widths: dict[int, int] = {}
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths.get(index, 0), len(cell))
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[index] + 4) for index, cell in enumerate(row[:-1])]
        lines.append("".join([*cells, row[-1]]) + "\n")
    return "".join(lines)


# -- stop -----------------------------------------------------------------------

def _stop(args: argparse.Namespace) -> int:
    import signal

    from capsa.runtime.instance import list_instances, parse_signal, stop_instances

    if args.name is None and not args.all:
        raise UsageError("invalid command")
    _check_user(args.user, "stop")
    signum = parse_signal(args.signal) if args.signal else signal.SIGINT
    if args.force:
        signum = signal.SIGKILL
    found = list_instances(args.name or "*", args.user)
    if not found:
        raise NotFoundError("no instance found")
    stop_instances(found, signum, max(args.timeout, 0))
    return 0


# -- exec|run|shell instance://NAME -------------------------------------------

def run_in_instance(args: argparse.Namespace) -> int:
    """The action of *args* inside a running instance (exits with its status)."""
    from capsa.runtime.instance import get_instance
    from capsa.runtime.instance_process import join_instance
    from capsa.runtime.spec import ImageSpec

    instance = get_instance(args.image[len(_PREFIX):])
    args.image = instance.image
    args.image_ref = instance.image
    # The instance has its image mounted already: nothing to open (its file
    # may be gone, e.g. a temporary pull held open by the instance).
    spec = actions.build_spec(args, ImageSpec("instance", instance.image))
    status = join_instance(spec, instance)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
