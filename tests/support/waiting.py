"""Waiting for something another process does, without a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll *predicate* every *interval* seconds for up to *timeout*; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
