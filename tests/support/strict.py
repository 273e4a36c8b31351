"""Strict mode: ``CAPSA_TEST_STRICT=1`` (``.ci/run`` sets it; ``scripts/test``
passes it on to pytest) turns every skip into a failure, so that a broken
install (no squashfuse, no docker-registry, no user namespaces, no client
programs...) cannot give a green run.

The skips that a healthy machine is expected to have stay skips, with
their reason: ``pytest.skip(expected(reason))`` (or a marker's
``reason=expected(...)``) records the reason as one that may skip.
They are the host's hardware and configuration, not its installation: no
GPU, no cgroup delegated to the test user (or one delegated, for the test
of its absence), no ``../shared`` beside the checkout.

``tests/conftest.py`` applies the rule to every test report.
"""

from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("CAPSA_TEST_STRICT", "") == "1"
_EXPECTED: set[str] = set()


def expected(reason: str) -> str:
    """*reason*, recorded as one that skips even in strict mode (see the
    module docstring)."""
    _EXPECTED.add(reason)
    return reason


def enforce(report: pytest.TestReport) -> None:
    """In strict mode, a skip for any other reason becomes a failure."""
    if not STRICT or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if reason in _EXPECTED:
        return
    report.outcome = "failed"
    report.longrepr = (f"strict mode (CAPSA_TEST_STRICT=1): skipped for a missing tool or "
                       f"capability, which a complete install has: {reason}")


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")
