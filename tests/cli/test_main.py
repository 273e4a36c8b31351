"""The command line's frame: version, help, unknown input, exit codes."""

from __future__ import annotations

import re

from support.cli import Capsa


def test_version_flag_has_the_form_clients_parse(any_capsa: Capsa) -> None:
    result = any_capsa("--version")
    assert result.returncode == 0, result
    assert re.fullmatch(r"capsa version \d+\.\d+\.\d+\n", result.stdout)
    assert result.stderr == ""


def test_version_command_prints_the_bare_version(capsa: Capsa) -> None:
    result = capsa("version")
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", result.stdout), result


def test_unknown_command_is_fatal(capsa: Capsa) -> None:
    result = capsa("no-such-command")
    assert result.returncode == 255
    assert result.stderr.startswith('FATAL:   unknown command "no-such-command"')


def test_unknown_flag_is_fatal_without_traceback(capsa: Capsa) -> None:
    result = capsa("version", "--no-such-flag")
    assert result.returncode == 255
    assert result.stderr.startswith("FATAL:   ")
    assert "Traceback" not in result.stderr


def test_help_lists_commands(capsa: Capsa) -> None:
    result = capsa("--help")
    assert result.returncode == 0
    assert "version" in result.stdout
