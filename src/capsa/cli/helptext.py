"""Help texts, shaped as Apptainer shapes them, and their rendering.

Every command's ``--help`` (and ``help COMMAND [SUBCOMMAND]``) prints the
same sections as Apptainer's: a one-line summary first (the line tools such
as spython show), ``Usage:``, ``Description:``, ``Options:``, ``Global
Options:``, ``Available Commands:`` for command groups, and ``Examples:``.
The texts live here, in one table keyed by command path, like Apptainer's
``docs/content.go``; this module is imported only when help is asked for.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import NamedTuple

WIDTH = 80


class Doc(NamedTuple):
    """One command's help: summary line, usage (after the program name),
    description and examples (indented blocks, without the headings)."""

    short: str
    usage: str
    description: str = ""
    examples: str = ""


_FORMATS = """\
  IMAGE may be:
    image.sif           a SIF file (Apptainer 1.x, Singularity 3.x)
    image.sqfs          a bare squashfs file, or a Singularity 2.x .simg
                        (a launch line followed by a squashfs)
    image.img           a Singularity 2.x ext3 image (mounted as root only)
    directory/          a sandbox: a root filesystem in a directory
    instance://NAME     a running instance (see 'instance')
    docker://REF        an image in an OCI registry, pulled into the cache
    oras://REF          a SIF stored in an OCI registry
    oci:DIR, oci-archive:FILE, docker-archive:FILE
                        an OCI layout or archive on this host"""

ROOT = Doc(
    "Run containers of Apptainer's format, rootless and without a daemon",
    "[global options...] <command>",
    """\
  capsa runs Apptainer's images (SIF files, sandboxes, OCI registry images)
  as the calling user: a user namespace, a mount namespace and the image
  mounted read-only.  It answers to 'apptainer' and 'singularity' too, with
  Apptainer's commands, flags, messages and files.""",
    """\
  $ {prog} help <command> [<subcommand>]
  $ {prog} help build
  $ {prog} help instance start""",
)

DOCS: dict[str, Doc] = {
    "version": Doc(
        "Show the version for Apptainer",
        "version",
        """\
  Print the version on its own line: the Apptainer command-line level this
  program implements, with capsa's own version as a '+capsa.' suffix (when
  called as 'capsa', capsa's version alone).""",
        "  $ {prog} version",
    ),
    "exec": Doc(
        "Run a command within a container",
        "exec [exec options...] <container> <command>",
        "  Run COMMAND with its arguments inside the container.\n\n" + _FORMATS,
        """\
  $ {prog} exec ubuntu.sif cat /etc/os-release
  $ {prog} exec -B /data:/mnt ubuntu.sif ls /mnt
  $ echo 'print(1 + 1)' | {prog} exec python.sif python3
  $ {prog} exec --containall --pwd /work -B $PWD:/work tools.sif make
  $ {prog} exec instance://web ps -ef
  $ {prog} exec docker://alpine:3.20 uname -a""",
    ),
    "run": Doc(
        "Run the user-defined default command within a container",
        "run [run options...] <container> [args...]",
        """\
  Run the image's runscript (/.singularity.d/runscript, written from the
  %runscript section or from an OCI image's ENTRYPOINT and CMD), passing it
  the arguments given after the image.  An image without a runscript runs
  /bin/sh.  A SIF file can also be run as a program: its first line is
  '#!/usr/bin/env run-singularity'.

""" + _FORMATS,
        """\
  $ {prog} run app.sif --input data.csv
  $ ./app.sif --input data.csv
  $ {prog} run --app hello app.sif
  $ {prog} run docker://alpine:3.20 echo hello""",
    ),
    "shell": Doc(
        "Run a shell within a container",
        "shell [shell options...] <container>",
        """\
  Start an interactive shell in the container: --shell PATH if given, else
  /bin/bash (without reading rc files), else /bin/sh.  The prompt is
  'Apptainer> '.

""" + _FORMATS,
        """\
  $ {prog} shell ubuntu.sif
  Apptainer> cat /etc/os-release
  Apptainer> exit
  $ {prog} shell --contain --shell /bin/sh ubuntu.sif""",
    ),
    "test": Doc(
        "Run the user-defined tests within a container",
        "test [exec options...] <image path>",
        """\
  Run the image's test script (/.singularity.d/test, from the %test section
  of its definition file).  An image without one exits 0.""",
        "  $ {prog} test app.sif",
    ),
    "inspect": Doc(
        "Show metadata for an image",
        "inspect [inspect options...] <image path>",
        """\
  Print the metadata recorded in an image: its labels (the default), the
  definition file it was built from, its runscript, startscript and test
  script, its environment scripts and its help text, as text or as JSON.""",
        """\
  $ {prog} inspect app.sif
  $ {prog} inspect --deffile --runscript app.sif
  $ {prog} inspect --json --all app.sif
  $ {prog} inspect --list-apps app.sif""",
    ),
    "run-help": Doc(
        "Show the user-defined help for an image",
        "run-help [run-help options...] <image path>",
        "  Print the %help section of the image, or of one of its apps with --app.",
        """\
  $ {prog} run-help app.sif
  $ {prog} run-help --app hello app.sif""",
    ),
    "instance": Doc(
        "Manage containers running as services",
        "instance <command>",
        """\
  An instance is a named container left running in the background, for
  services such as databases or web servers.  Commands run inside it with
  'exec instance://NAME', and it ends with 'instance stop'.""",
        """\
  Each command has its own help:

  $ {prog} help instance start
  $ {prog} instance list --help""",
    ),
    "instance start": Doc(
        "Start a named instance of the given container image",
        "instance start [start options...] <container path> <instance name> "
        "[startscript args...]",
        """\
  Start the container in the background under NAME and run its startscript
  (the %startscript section) with the arguments given after the name.  The
  instance keeps running after the startscript returns 0; its output goes to
  the log files 'instance list --logs' shows.  It takes the options of
  'exec' (binds, --contain, --nv, the environment...).""",
        """\
  $ {prog} instance start -B /srv/data:/data db.sif db1
  $ {prog} exec instance://db1 psql -c 'select 1'
  $ {prog} instance stop db1""",
    ),
    "instance run": Doc(
        "Run a named instance of the given container image",
        "instance run [run options...] <container path> <instance name> [runscript args...]",
        """\
  Start the container in the background under NAME and run its runscript
  with the arguments given after the name; the instance ends when the
  runscript does.""",
        """\
  $ {prog} instance run web.sif web1 --port 8080
  $ {prog} instance list""",
    ),
    "instance stop": Doc(
        "Stop a named instance of a given container image",
        "instance stop [stop options...] [instance name]",
        """\
  Send the instance's first process a signal (SIGINT unless --signal says
  otherwise), and kill what is left after --timeout seconds.  The name may
  be a glob pattern; --all stops every instance of the user.""",
        """\
  $ {prog} instance stop web1
  $ {prog} instance stop --signal TERM --timeout 30 'web*'
  $ {prog} instance stop --all""",
    ),
    "instance list": Doc(
        "List all running and named Apptainer instances",
        "instance list [list options...] [<instance name glob>]",
        """\
  List the user's running instances: name, PID of the first process, IP
  address and image; --logs shows the log files, --json prints the list as
  JSON.""",
        """\
  $ {prog} instance list
  $ {prog} instance list --json 'web*'
  $ {prog} instance list --logs""",
    ),
    "instance stats": Doc(
        "Get stats for a named instance",
        "instance stats [stats options...] <instance name>",
        "  Resource usage of an instance; only available for instances in a cgroup.",
        "  $ {prog} instance stats web1",
    ),
    "pull": Doc(
        "Pull an image from a URI",
        "pull [pull options...] [output file] <URI>",
        """\
  Fetch an image and write it as one SIF file: from an OCI registry
  (docker://), a SIF stored in a registry (oras://), or an OCI layout or
  archive (oci:, oci-archive:, docker-archive:).  Without an output file the
  name is <name>_<tag>.sif.  Layers and converted images are kept in the
  cache, so a second pull of the same image is a copy.""",
        """\
  $ {prog} pull docker://alpine:3.20
  $ {prog} pull tools.sif docker://registry.example.org/lab/tools:2.1
  $ {prog} pull --name app.sif oras://registry.example.org/lab/app:1.0
  $ {prog} pull --no-https docker://127.0.0.1:5000/busybox:latest""",
    ),
    "push": Doc(
        "Upload image to the provided URI",
        "push [push options...] <image> oras://<registry>/<name>[:tag]",
        "  Upload a SIF file to an OCI registry, stored as an ORAS artifact.",
        "  $ {prog} push app.sif oras://registry.example.org/lab/app:1.0",
    ),
    "build": Doc(
        "Build an Apptainer image",
        "build [build options...] <IMAGE PATH> <BUILD SPEC>",
        """\
  Write IMAGE PATH, a SIF file or (with --sandbox) a directory, from BUILD
  SPEC: a definition file, an image in a registry (docker://, oras://), an
  OCI layout or archive (oci:, oci-archive:, docker-archive:), a SIF file or
  a sandbox directory.  Definition files bootstrap from docker, oras,
  localimage, busybox, debootstrap or scratch; their %post runs rootless,
  as root inside a user namespace.""",
        """\
  $ {prog} build alpine.sif docker://alpine:3.20
  $ {prog} build app.sif app.def
  $ {prog} build --sandbox app/ app.def
  $ {prog} build app.sif app/

  A definition file:

    Bootstrap: docker
    From: debian:12

    %post
        apt-get update && apt-get install -y --no-install-recommends python3

    %runscript
        exec python3 "$@\"""",
    ),
    "cache": Doc(
        "Manage the local cache",
        "cache <command>",
        """\
  The cache (~/.apptainer/cache, or $APPTAINER_CACHEDIR/cache) keeps the
  layers pulled from registries and the SIF images made from them.""",
        """\
  $ {prog} cache list
  $ {prog} cache clean --days 30""",
    ),
    "cache list": Doc(
        "List your local Apptainer cache",
        "cache list [list options...]",
        "  Summarise what the cache holds; --verbose lists every entry.",
        """\
  $ {prog} cache list
  $ {prog} cache list --verbose --type oci""",
    ),
    "cache clean": Doc(
        "Clean your local Apptainer cache",
        "cache clean [clean options...]",
        """\
  Remove cached layers and images, all of them or those of --type, or only
  those older than --days.""",
        """\
  $ {prog} cache clean --force
  $ {prog} cache clean --dry-run --days 7
  $ {prog} cache clean --type blob""",
    ),
    "key": Doc(
        "Manage OpenPGP keys",
        "key <command>",
        """\
  The OpenPGP keyrings used to sign and verify images, kept in
  ~/.apptainer/keys.""",
        """\
  $ {prog} key newpair
  $ {prog} key list --secret
  $ {prog} key export --armor mykey.asc""",
    ),
    "key newpair": Doc(
        "Create a new key pair",
        "key newpair [newpair options...]",
        """\
  Create an OpenPGP key pair in the local keyring, asking for the name,
  email, comment and passphrase unless given as options.""",
        '  $ {prog} key newpair --name "A User" --email user@example.org --password ""',
    ),
    "key list": Doc(
        "List keys in your local or in the global keyring",
        "key list [list options...]",
        "  List the public keys, or with --secret the private keys, of the keyring.",
        "  $ {prog} key list",
    ),
    "key export": Doc(
        "Export a public or private key into a specific file",
        "key export [export options...] <output-file>",
        "  Write the keyring's public (or --secret) keys to a file.",
        "  $ {prog} key export --armor public.asc",
    ),
    "key import": Doc(
        "Import a local key into the local or global keyring",
        "key import [import options...] <input-key>",
        "  Add the public and private keys of a file to the local keyring.",
        "  $ {prog} key import colleague.asc",
    ),
    "key remove": Doc(
        "Remove a local public key from your local or the global keyring",
        "key remove [remove options...] <fingerprint>",
        "  Remove the key with this fingerprint from the local keyring.",
        "  $ {prog} key remove 8883491F4268F173C6E5DC49EDECE4F3F38D871E",
    ),
    "sign": Doc(
        "Add digital signature(s) to an image",
        "sign [sign options...] <image path>",
        """\
  Sign the objects of a SIF image with a private key of the local keyring
  (OpenPGP) or a PEM key (--key, a DSSE envelope).""",
        """\
  $ {prog} sign app.sif
  $ {prog} sign --keyidx 1 app.sif
  $ {prog} sign --key private.pem app.sif""",
    ),
    "verify": Doc(
        "Verify digital signature(s) within an image",
        "verify [verify options...] <image path>",
        """\
  Check the signatures of a SIF image against the keys of the local and the
  site keyrings, or against a PEM public key (--key).""",
        """\
  $ {prog} verify app.sif
  $ {prog} verify --key public.pem app.sif
  $ {prog} verify --json app.sif""",
    ),
    "registry": Doc(
        "Manage authentication to OCI/Docker registries",
        "registry <command>",
        "  Store, remove and list the credentials used for docker:// and oras:// URIs.",
        """\
  $ {prog} registry login --username me docker://registry.example.org
  $ {prog} registry list""",
    ),
    "registry login": Doc(
        "Login to an OCI/Docker registry",
        "registry login [login options...] <registry_uri>",
        "  Check credentials against a registry and store them for later pulls.",
        "  $ echo $TOKEN | {prog} registry login -u me --password-stdin docker://ghcr.io",
    ),
    "registry logout": Doc(
        "Logout from an OCI/Docker registry",
        "registry logout [logout options...] <registry_uri>",
        "  Remove the stored credentials of a registry.",
        "  $ {prog} registry logout docker://ghcr.io",
    ),
    "registry list": Doc(
        "List all OCI credentials that are configured",
        "registry list [list options...]",
        "  List the registries that have stored credentials.",
        "  $ {prog} registry list",
    ),
    "sif": Doc(
        "Manipulate Singularity Image Format (SIF) images",
        "sif <command>",
        """\
  Show the header, the object descriptors and the objects of a SIF image, or
  add and remove objects: the commands of siftool.""",
        """\
  $ {prog} sif list app.sif
  $ {prog} sif info 4 app.sif
  $ {prog} sif dump 1 app.sif""",
    ),
}

for _name, _short, _example in (
        ("new", "Write an empty SIF image", "new empty.sif"),
        ("add", "Append an object", "add --datatype 4 --parttype 1 --partfs 1 --partarch 2 "
                                    "image.sif rootfs.sqfs"),
        ("del", "Remove an object", "del 3 image.sif"),
        ("list", "List the objects", "list image.sif"),
        ("info", "Describe an object", "info 4 image.sif"),
        ("dump", "Print an object", "dump 1 image.sif > deffile"),
        ("header", "Print the global header", "header image.sif"),
        ("setprim", "Choose the primary partition", "setprim 4 image.sif")):
    _takes_id = _name in ("del", "info", "dump", "setprim")
    DOCS[f"sif {_name}"] = Doc(_short, f"sif {_name} [{_name} options...] "
                               + ("<id> " if _takes_id else "") + "<sif path>"
                               + (" <object path>" if _name == "add" else ""),
                               examples=f"  $ {{prog}} sif {_example}")
DOCS["siftool"] = DOCS["sif"]._replace(usage="siftool <command>")


def doc_for(path: str) -> Doc | None:
    """The help of command *path* (``"exec"``, ``"instance start"``)."""
    if path.startswith("siftool "):
        path = "sif " + path[len("siftool "):]
    return DOCS.get(path)


# --- rendering ------------------------------------------------------------------

def render(parser: argparse.ArgumentParser, program: str, global_titles: tuple[str, ...]
           ) -> str:
    """*parser*'s help in Apptainer's shape; *program* is the name we were
    called by, *global_titles* the argument groups holding the global flags."""
    path = parser.prog.partition(" ")[2]
    doc = doc_for(path) or Doc(parser.description or "", _default_usage(parser, path))
    short = getattr(parser, "short", "") or doc.short
    out = [short, "", "Usage:", f"  {program} {doc.usage}", ""]
    description = doc.description.format(prog=program) if doc.description else (
        textwrap.indent(parser.description, "  ") if parser.description else "")
    if description:
        out += ["Description:", description, ""]
    local, inherited = _split_options(parser, global_titles)
    if local:
        out += ["Options:", *_flag_table(local, path), ""]
    if inherited:
        out += ["Global Options:", *_flag_table(inherited, path), ""]
    commands = _subcommands(parser, path)
    if commands:
        out += ["Available Commands:", *_command_table(commands), ""]
    if doc.examples:
        out += ["Examples:", doc.examples.format(prog=program), ""]
    return "\n".join(out) + "\n"


def render_root(program: str, commands: list[tuple[str, str]],
                global_flags: list[tuple[list[str], str, str]]) -> str:
    """``capsa --help``: the program's own help and its command list."""
    out = [ROOT.short, "", "Usage:", f"  {program} {ROOT.usage}", "",
           "Description:", ROOT.description, "", "Options:"]
    flags = [*global_flags, (["-c", "--config"], "FILE", "specify a configuration file"),
             (["--version"], "", "print the version and exit"),
             (["-h", "--help"], "", f"help for {program}")]
    out += [*_rows([(_names(names, metavar), text) for names, metavar, text in flags]), ""]
    out += ["Available Commands:", *_command_table(commands), ""]
    out += ["Examples:", ROOT.examples.format(prog=program), ""]
    return "\n".join(out) + "\n"


def _default_usage(parser: argparse.ArgumentParser, path: str) -> str:
    if parser.usage:
        return parser.usage.replace("%(prog)s", path)
    positionals = [a.metavar or a.dest for a in parser._actions
                   if not a.option_strings and a.help != argparse.SUPPRESS]
    return " ".join([path, "[options...]", *(f"<{p}>" for p in positionals)])


def _split_options(parser: argparse.ArgumentParser, global_titles: tuple[str, ...]
                   ) -> tuple[list[argparse.Action], list[argparse.Action]]:
    inherited = [a for group in parser._action_groups if group.title in global_titles
                 for a in group._group_actions]
    local = [a for a in parser._actions if a.option_strings and a not in inherited
             and a.help != argparse.SUPPRESS]
    return local, inherited


def _names(option_strings: list[str], metavar: str) -> str:
    shorts = [o for o in option_strings if not o.startswith("--")]
    longs = [o for o in option_strings if o.startswith("--")]
    text = ", ".join(shorts + longs) if shorts else "    " + ", ".join(longs)
    return f"{text} {metavar}" if metavar else text


def _flag_table(actions: list[argparse.Action], path: str) -> list[str]:
    rows = []
    for action in actions:
        metavar = ""
        if action.nargs != 0:  # cobra shows the value's type when it has no name
            metavar = action.metavar if isinstance(action.metavar, str) else \
                ("int" if action.type is int else "string")
        text = (action.help or "").replace("%%", "%")
        if isinstance(action, argparse._HelpAction):
            text = f"help for {path.rpartition(' ')[2]}"
        rows.append((_names(list(action.option_strings), metavar), text))
    return _rows(rows)


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(left) for left, _ in rows) + 3
    lines = []
    for left, text in rows:
        wrapped = textwrap.wrap(text, max(WIDTH - width - 2, 20),
                                break_on_hyphens=False) or [""]
        lines.append(f"  {left.ljust(width)}{wrapped[0]}".rstrip())
        lines += [" " * (width + 2) + more for more in wrapped[1:]]
    return lines


def _subcommands(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, str]]:
    """A group's commands: its subparsers, or (``sif``, whose subparsers are
    made only when one runs) the table's entries under *path*."""
    names = [choice.dest for action in parser._actions
             if isinstance(action, argparse._SubParsersAction)
             for choice in action._choices_actions]
    if not names:
        prefix = ("sif" if path == "siftool" else path) + " "
        names = [key[len(prefix):] for key in DOCS if key.startswith(prefix)]
    found = []
    for name in names:
        doc = doc_for(f"{path} {name}")
        found.append((name, doc.short if doc else ""))
    return found


def _command_table(commands: list[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in commands) + 1
    return [f"  {name.ljust(width)} {text}".rstrip() for name, text in commands]
