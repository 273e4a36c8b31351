"""CAPSA_TEST_STRICT=1: a skip for a missing tool fails; the skips a healthy
machine has (support.strict.expected) stay skips."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.env import REPO, VENV

CONFTEST = '''
import pytest
from support.strict import enforce

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    enforce(outcome.get_result())
'''

TESTS = '''
import pytest
from support.strict import expected

def test_tool_missing():
    pytest.skip("siftool is not installed")

def test_no_gpu_here():
    pytest.skip(expected("no NVIDIA GPU on this host"))

@pytest.mark.skipif(True, reason=expected("no cgroup for this user here"))
def test_marker():
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
'''


def _pytest(args: list[str], cwd: Path, strict: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}:{REPO / 'src'}"}
    env.pop("CAPSA_TEST_STRICT", None)
    if strict:
        env["CAPSA_TEST_STRICT"] = "1"
    return subprocess.run([str(VENV / "bin" / "python"), "-m", "pytest", "-q", "-rfs",
                           "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_skips.py").write_text(TESTS)
    return tmp_path


def test_without_strict_mode_everything_skips(suite: Path) -> None:
    done = _pytest(["test_skips.py"], suite, strict=False)
    assert done.returncode == 0, done.stdout
    assert "3 skipped, 1 xfailed" in done.stdout


def test_strict_mode_fails_only_the_missing_tool(suite: Path) -> None:
    done = _pytest(["test_skips.py"], suite, strict=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 2 skipped, 1 xfailed" in done.stdout
    assert ("strict mode (CAPSA_TEST_STRICT=1): skipped for a missing tool or capability, "
            "which a complete install has: siftool is not installed") in done.stdout


def test_the_suite_keeps_expected_skips_in_strict_mode() -> None:
    """The real conftest: no GPU here stays a skip (or runs, on a GPU host)."""
    done = _pytest(["tests/gpu/test_real_gpu.py"], REPO, strict=True)
    assert done.returncode == 0, done.stdout
