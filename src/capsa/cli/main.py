"""Entry point: global flags, command dispatch, errors to exit codes.

Startup is on the hot path (``capsa exec``), so this module imports only
what every command needs; each command lives in its own module under
:mod:`capsa.cli.commands` and is imported only when it runs.  A command
module defines ``HELP`` (one line), ``configure(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from capsa import __version__
from capsa.cli import log
from capsa.errors import CapsaError, UsageError
from capsa.site import DEFAULT_SETTINGS, SiteSettings

# command name -> module under capsa.cli.commands.  Commands whose module is
# not present are neither listed nor accepted: nothing pretends to work.
COMMANDS: dict[str, str] = {
    "build": "build",
    "cache": "cache",
    "exec": "actions",
    "inspect": "inspect",
    "instance": "instance",
    "key": "key",
    "overlay": "overlay",
    "pull": "pull",
    "push": "push",
    "registry": "registry",
    "run": "actions",
    "run-help": "run_help",
    "shell": "actions",
    "sif": "sif",
    "siftool": "sif",  # Apptainer's alias of `sif`
    "sign": "sign",
    "test": "actions",
    "verify": "verify",
    "version": "version",
}

# Commands that write scratch space: SIGTERM/SIGHUP end them through their
# cleanup (see capsa.cli.signals).  exec & co. do so while they pull.
CLEANUP_ON_TERMINATION = frozenset({"pull", "build"})

_GLOBAL_HELP = """\
global options:
  -d, --debug     print debugging information (highest verbosity)
  -v, --verbose   print additional information
  -q, --quiet     suppress normal output
  -s, --silent    only print errors
      --nocolor   print without color output
  -c, --config F  specify a configuration file
      --version   print the version and exit
  -h, --help      print this help
"""


def program_name(argv0: str | None = None) -> str:
    """``apptainer``, ``singularity`` or ``capsa``, as the user called us."""
    name = os.path.basename(argv0 if argv0 is not None else sys.argv[0])
    return name if name in ("apptainer", "singularity") else "capsa"


def available_commands() -> list[str]:
    import importlib.util  # only for --help: find_spec costs ~2 ms at startup

    return sorted(
        name
        for name, module in COMMANDS.items()
        if importlib.util.find_spec(f"capsa.cli.commands.{module}") is not None
    )


def load_command(name: str) -> ModuleType:
    module = COMMANDS.get(name)
    qualified = f"capsa.cli.commands.{module}"
    try:
        if module is None:
            raise ModuleNotFoundError(name=qualified)
        return importlib.import_module(qualified)
    except ModuleNotFoundError as err:
        if err.name != qualified:
            raise  # a module the command needs is missing: not an unknown command
        raise UsageError(f"unknown command \"{name}\" for \"{program_name()}\"") from None


def usage_text() -> str:
    prog = program_name()
    lines = [f"Usage:\n  {prog} [global options...] <command>\n", "Available Commands:"]
    for name in available_commands():
        help_line = getattr(load_command(name), "HELP", "")
        lines.append(f"  {name:<12} {help_line}")
    lines.append("")
    lines.append(_GLOBAL_HELP)
    return "\n".join(lines)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad usage as a UsageError (FATAL, exit 255)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


class GlobalOptions:
    """The flags that come before the command."""

    __slots__ = ("colour", "config", "level")

    def __init__(self) -> None:
        self.level = log.NORMAL
        self.colour = True
        self.config: str | None = None


def _flag_from_env(name: str) -> bool:
    for prefix in ("APPTAINER_", "SINGULARITY_"):
        value = os.environ.get(prefix + name)
        if value is not None:
            return value.lower() not in ("", "0", "false", "no")
    return False


def parse_globals(argv: Sequence[str]) -> tuple[GlobalOptions, list[str]]:
    """Consume the global flags; return them and the rest (command first)."""
    opts = GlobalOptions()
    levels: list[int] = []
    for name, level in (("DEBUG", log.DEBUG), ("VERBOSE", log.VERBOSE),
                        ("QUIET", log.QUIET), ("SILENT", log.SILENT)):
        if _flag_from_env(name):
            levels.append(level)
    if _flag_from_env("NOCOLOR"):
        opts.colour = False
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in ("-d", "--debug"):
            levels.append(log.DEBUG)
        elif flag in ("-v", "--verbose"):
            levels.append(log.VERBOSE)
        elif flag in ("-q", "--quiet"):
            levels.append(log.QUIET)
        elif flag in ("-s", "--silent"):
            levels.append(log.SILENT)
        elif flag == "--nocolor":
            opts.colour = False
        elif flag in ("-c", "--config"):
            if not rest:
                raise UsageError(f"flag needs an argument: {flag}")
            opts.config = rest.pop(0)
        elif flag.startswith("--config="):
            opts.config = flag.split("=", 1)[1]
        elif flag in ("--version", "-h", "--help"):
            rest.insert(0, flag)
            break
        else:
            raise UsageError(f"unknown flag: {flag}")
    # Debug beats verbose beats quiet beats silent, as in Apptainer.
    if levels:
        opts.level = min(levels)
    return opts, rest


def version_line() -> str:
    name = "capsa" if program_name() == "capsa" else "apptainer"
    return f"{name} version {__version__}"


def dispatch(argv: Sequence[str], site: SiteSettings = DEFAULT_SETTINGS) -> int:
    opts, rest = parse_globals(argv)
    log.setup(opts.level, opts.colour)
    if not rest or (rest[0] in ("-h", "--help", "help") and len(rest) < 2):
        sys.stdout.write(usage_text())
        return 0
    if rest[0] == "--version":
        print(version_line())
        return 0
    if rest[0] == "help":
        rest = [rest[1], "--help"]
    name = rest[0]
    command = load_command(name)
    parser = ArgumentParser(
        prog=f"{program_name()} {name}", description=getattr(command, "HELP", None)
    )
    command.configure(parser)
    args = parser.parse_args(rest[1:])
    args.command = name
    args.global_options = opts
    args.site = site
    if name not in CLEANUP_ON_TERMINATION:
        result: int = command.run(args)
        return result
    from capsa.cli.signals import cleanup_on_termination

    with cleanup_on_termination():
        result = command.run(args)
    return result


def main(argv: Sequence[str] | None = None, site: SiteSettings = DEFAULT_SETTINGS) -> int:
    """Run the CLI; return the exit status instead of exiting.

    *site* is what the site decided; the shipped entry points always pass
    the defaults (nothing a user sets can change it), tests their own."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(args, site)
    except CapsaError as err:
        log.fatal_line(str(err))
        return err.exit_code
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (cli.signals)
        code = getattr(err, "exit_code", 130)
        return code if isinstance(code, int) else 130
    except BrokenPipeError:
        return 141
    except SystemExit as done:  # argparse exits 2 on bad flags; keep that
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 255)
    except Exception as err:
        if log.enabled(log.DEBUG):
            import traceback

            traceback.print_exc()
        log.fatal_line(f"internal error: {type(err).__name__}: {err}")
        return 255


def entry() -> None:
    """The console-script entry point for capsa, apptainer and singularity."""
    sys.exit(main())


def run_singularity_entry() -> None:
    """``run-singularity IMAGE ARGS``: the SIF launch line's interpreter."""
    sys.exit(main(["run", *sys.argv[1:]]))
