"""Help in Apptainer's shape, for every command, however it is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa

_COMMANDS = ["build", "cache", "cache clean", "cache list", "exec", "inspect", "instance",
             "instance list", "instance run", "instance start", "instance stats",
             "instance stop", "key", "key export", "key import", "key list", "key newpair",
             "key remove", "pull", "push", "registry", "registry list", "registry login",
             "registry logout", "run", "run-help", "shell", "sif", "sif list", "sif add",
             "sign", "test", "verify", "version"]


def test_every_command_has_apptainers_sections(capsa: Capsa) -> None:
    app = capsa.as_program("apptainer")
    for command in _COMMANDS:
        result = app(*command.split(), "--help")
        assert (result.returncode, result.stderr) == (0, ""), result
        lines = result.stdout.splitlines()
        assert lines[0] and not lines[0].startswith(" "), (command, lines[:3])
        assert lines[1:3] == ["", "Usage:"], (command, lines[:4])
        assert lines[3].startswith(f"  apptainer {command}"), (command, lines[3])
        assert "Examples:" in lines, command
        assert "Global Options:" in lines, command
        assert "  -h, --help" in result.stdout


def test_help_before_the_command_as_spython_asks(any_capsa: Capsa) -> None:
    # spython's Client.help("exec") runs `singularity --help exec`
    singularity = any_capsa.as_program("singularity")
    ways = [("--help", "exec"), ("-h", "exec"), ("help", "exec"), ("exec", "--help"),
            ("exec", "-h")]
    outputs = {singularity(*way).stdout for way in ways}
    assert len(outputs) == 1
    text = outputs.pop()
    assert text.startswith("Run a command within a container\n\nUsage:\n  singularity exec ")


def test_help_for_a_subcommand(any_capsa: Capsa) -> None:
    for way in (("help", "instance", "start"), ("--help", "instance", "start"),
                ("instance", "start", "--help"), ("instance", "--help", "start")):
        result = any_capsa(*way)
        assert result.returncode == 0, result
        assert result.stdout.startswith(
            "Start a named instance of the given container image\n\nUsage:\n"
            "  capsa instance start [start options...] <container path> <instance name>"), way


def test_group_help_lists_its_commands(capsa: Capsa) -> None:
    text = capsa("help", "instance").stdout
    section = text.split("Available Commands:\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[0] for line in section.splitlines()] == \
        ["start", "run", "list", "stop", "stats"]
    assert "  stop   Stop a named instance of a given container image" in section


def test_root_help(any_capsa: Capsa) -> None:
    for way in ((), ("--help",), ("-h",), ("help",)):
        result = any_capsa.as_program("apptainer")(*way)
        assert result.returncode == 0
        assert "Usage:\n  apptainer [global options...] <command>\n" in result.stdout
        assert "\n  exec      Run a command within a container\n" in result.stdout


def test_global_flags_are_listed_where_the_command_does_not_use_the_letter(
        capsa: Capsa) -> None:
    exec_help = capsa("exec", "--help").stdout
    global_part = exec_help.split("Global Options:\n", 1)[1].split("\n\n", 1)[0]
    assert "      --silent" in global_part and "-s, --silent" not in global_part
    assert "-s, --shell" in exec_help.split("Global Options:", 1)[0]
    assert "-q, --quiet" in global_part


@pytest.mark.parametrize("way", [("help", "nosuch"), ("--help", "nosuch"), ("nosuch", "--help")])
def test_help_for_an_unknown_command_is_fatal(any_capsa: Capsa, way: tuple[str, ...]) -> None:
    result = any_capsa(*way)
    assert result.returncode == 255
    assert result.stderr == 'FATAL:   unknown command "nosuch" for "capsa"\n'
    assert result.stdout == ""


@pytest.mark.needs_userns
def test_help_after_the_image_goes_to_the_command(any_capsa: Capsa, scratch: Path) -> None:
    from support.images import build_all

    sif = build_all(scratch / "img")["sif"]
    result = any_capsa("exec", str(sif), "echo", "--help")
    assert (result.returncode, result.stdout) == (0, "--help\n"), result
