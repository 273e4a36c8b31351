"""Fixtures for the SIF tests: the reference corpus and siftool."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def images(interop: Path) -> Path:
    return interop / "images"


@pytest.fixture(scope="session")
def siftool() -> str:
    path = shutil.which("siftool")
    if path is None:
        pytest.skip("siftool is not installed")
    return path
