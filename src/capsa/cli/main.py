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

from capsa import APPTAINER_VERSION, __version__
from capsa.cli import environment, log
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

# Apptainer's persistent flags: accepted before the command and among its own
# flags (where the command does not use the same letter: ``exec -s`` is
# ``--shell``).  (short, long, level, help)
_GLOBAL_FLAGS: tuple[tuple[str, str, int, str], ...] = (
    ("-d", "--debug", log.DEBUG, "print debugging information (highest verbosity)"),
    ("-q", "--quiet", log.QUIET, "suppress normal output"),
    ("-s", "--silent", log.SILENT, "only print errors"),
    ("-v", "--verbose", log.VERBOSE, "print additional information"),
)
_GLOBAL_GROUP = "global options"
_LEVELS_DEST = "global_levels_"  # + a number per parser: subparsers' namespaces
_NOCOLOR_DEST = "global_nocolor_"  # replace their parent's values when merged
# Commands that write scratch space: SIGTERM/SIGHUP end them through their
# cleanup (see capsa.cli.signals).  exec & co. do so while they pull.
CLEANUP_ON_TERMINATION = frozenset({"pull", "build"})


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
    from capsa.cli.helptext import doc_for, render_root

    commands = []
    for name in available_commands():
        doc = doc_for(name)
        commands.append((name, doc.short if doc else getattr(load_command(name), "HELP", "")))
    flags = [([short, long], "", text) for short, long, _, text in _GLOBAL_FLAGS]
    flags.append((["--nocolor"], "", "print without color output (default False)"))
    return render_root(program_name(), commands, flags)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad usage as a UsageError (FATAL, exit 255) and
    prints help in Apptainer's shape (:mod:`capsa.cli.helptext`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument (to check the
        # metavar), and each asks the terminal for its size: a syscall and
        # environment reads 60 times per start.  Help is rendered by
        # capsa.cli.helptext, so the width here never shows.
        return argparse.HelpFormatter(prog=self.prog, width=80)

    def format_help(self) -> str:
        from capsa.cli.helptext import render

        return render(self, program_name(), (_GLOBAL_GROUP,))


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    """Accept the global flags among *parser*'s own (and its subcommands'),
    as Apptainer's persistent flags are; letters the command uses itself stay
    the command's."""
    seen: set[int] = set()
    pending = [parser]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _add_global_group(current, len(seen))
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())


def _add_global_group(parser: argparse.ArgumentParser, number: int) -> None:
    taken = parser._option_string_actions
    group = parser.add_argument_group(_GLOBAL_GROUP)
    for short, long, level, text in _GLOBAL_FLAGS:
        names = [n for n in (short, long) if n not in taken]
        if names:
            group.add_argument(*names, action="append_const", const=level, help=text,
                               dest=f"{_LEVELS_DEST}{number}")
    if "--nocolor" not in taken:
        group.add_argument("--nocolor", action="store_true", dest=f"{_NOCOLOR_DEST}{number}",
                           help="print without color output (default False)")


def apply_global_flags(args: argparse.Namespace, opts: GlobalOptions) -> None:
    """Fold the global flags given after the command into *opts*, and set
    the message level again if they changed it."""
    levels: list[int] = []
    nocolor = False
    for key, value in vars(args).items():
        if key.startswith(_LEVELS_DEST) and value:
            levels += value
        elif key.startswith(_NOCOLOR_DEST) and value:
            nocolor = True
    if not levels and not nocolor:
        return
    opts.levels += levels
    opts.colour = opts.colour and not nocolor
    log.setup(opts.level, opts.colour)


class GlobalOptions:
    """The global flags (before the command, or among its own flags)."""

    __slots__ = ("colour", "config", "levels")

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.colour = True
        self.config: str | None = None

    @property
    def level(self) -> int:
        """Debug beats verbose beats quiet beats silent, as in Apptainer."""
        return min(self.levels) if self.levels else log.NORMAL


def parse_globals(argv: Sequence[str]) -> tuple[GlobalOptions, list[str]]:
    """Consume the global flags before the command; return them and the
    rest (command first).  ``APPTAINER_DEBUG`` and friends count as flags
    (:mod:`capsa.cli.environment`)."""
    opts = GlobalOptions()
    if not log.enabled(log.NORMAL):
        log.setup(log.NORMAL, colour=False)  # the variables' INFO lines; set again below
    for name, level in (("DEBUG", log.DEBUG), ("VERBOSE", log.VERBOSE),
                        ("QUIET", log.QUIET), ("SILENT", log.SILENT)):
        if environment.flag(os.environ, name):
            opts.levels.append(level)
    if environment.flag(os.environ, "NOCOLOR"):
        opts.colour = False
    levels = {flag: level for short, long, level, _ in _GLOBAL_FLAGS for flag in (short, long)}
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in levels:
            opts.levels.append(levels[flag])
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
    return opts, rest


def version_line() -> str:
    """``--version``: what clients parse (``apptainer version 1.4.5+capsa.1.0.0``:
    Snakemake takes the last word, cwltool ``(.+) version ([0-9.]+)``)."""
    if program_name() == "capsa":
        return f"capsa version {__version__}"
    return f"apptainer version {apptainer_version()}"


def apptainer_version() -> str:
    return f"{APPTAINER_VERSION}+capsa.{__version__}"


_GROUPS = ("cache", "instance", "key", "registry", "sif", "siftool")


def _asks_help(rest: list[str]) -> bool:
    """A help flag among nothing but a command's words (``--help exec``,
    ``instance --help start``), as cobra reads them; never a command's
    arguments (``exec IMAGE ls --help`` runs ``ls --help``)."""
    helps = [word for word in rest if word in ("-h", "--help")]
    words = [word for word in rest if word not in helps]
    if not helps or not words or any(word.startswith("-") for word in words):
        return False
    return len(words) == 1 or (len(words) == 2 and words[0] in _GROUPS)


def dispatch(argv: Sequence[str], site: SiteSettings = DEFAULT_SETTINGS) -> int:
    opts, rest = parse_globals(argv)
    log.setup(opts.level, opts.colour)
    if rest in (["-h"], ["--help"]):
        rest = []
    elif (rest and rest[0] == "help") or _asks_help(rest):
        # `help instance start`, `--help exec` (spython's Client.help) and
        # `instance --help start`: the help of the command the words name
        words = [word for word in rest[1 if rest[0] == "help" else 0:]
                 if word not in ("-h", "--help")]
        rest = [*words, "--help"] if words else []
    if not rest:
        sys.stdout.write(usage_text())
        return 0
    if rest[0] == "--version":
        print(version_line())
        return 0
    name = rest[0]
    command = load_command(name)
    parser = ArgumentParser(prog=f"{program_name()} {name}")
    command.configure(parser)
    add_global_flags(parser)
    args = parser.parse_args(rest[1:])
    apply_global_flags(args, opts)
    environment.apply(args, name)
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
        from capsa.cli.signals import interrupted_status

        return interrupted_status(err)
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
