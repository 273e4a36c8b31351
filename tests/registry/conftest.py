import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa
from support.registry import (
    auth_registry,
    hostile_registry,
    plain_registry,
    tls_registry,
    token_registry,
)

__all__ = ["auth_registry", "hostile_registry", "plain_registry", "tls_registry",
           "token_registry"]


@pytest.fixture
def default_authfile(any_capsa: Capsa) -> Iterator[Path]:
    """The user's ``~/.apptainer/docker-config.json``, restored afterwards."""
    path = any_capsa.user.home / ".apptainer" / "docker-config.json"
    saved = path.read_bytes() if path.exists() else None
    existed = path.parent.exists()
    yield path
    if saved is not None:
        path.write_bytes(saved)
    else:
        path.unlink(missing_ok=True)
        if not existed:
            shutil.rmtree(path.parent, ignore_errors=True)
