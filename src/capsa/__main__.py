"""``python -m capsa``: the same program as the ``capsa`` command."""

from capsa.cli.main import entry

entry()
