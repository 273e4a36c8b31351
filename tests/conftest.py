"""Fixtures every test may use.

- ``capsa``: run the CLI as the current user (root in CI).
- ``capsa_user``: run the CLI as an unprivileged user the suite creates.
- ``any_capsa``: both, as a parametrised fixture (``root`` and ``user``).
- ``capsa_nosub``: as a second unprivileged user, without subordinate ids.
- ``every_capsa``: root, the user with subordinate ids and the one without.
- ``scratch``: a fresh directory both identities can read and write.
- ``interop``: ``../shared/interop/sif-reference``, skipping when absent.
- ``reports``: what the library reported through :mod:`capsa.report`.

Markers (see pyproject.toml) skip with a reason where a capability is
missing: ``needs_root``, ``needs_userns``, ``needs_fuse``, ``needs_gpu``,
``needs_shared``.  With ``CAPSA_TEST_STRICT=1`` (CI) a skip fails instead,
unless it is one a healthy machine has (no GPU...): see :mod:`support.strict`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa, write_programs
from support.env import INTEROP, SCRATCH, SRC, fuse_usable, is_root, userns_works
from support.site import ENTRY_MODULE
from support.strict import STRICT, enforce, expected
from support.users import (
    User,
    current_user,
    ensure_test_user,
    ensure_user_without_subids,
    remove_private_homes,
    watch_test_homes,
)


def pytest_configure(config: pytest.Config) -> None:
    del config
    if is_root() and os.path.exists("/dev/fuse"):
        # Distributions ship /dev/fuse as 0666; this VM has 0600.  Open it up
        # as they do, so that rootless FUSE can be tested (the no-FUSE path is
        # tested through a site that never mounts images / --unsquash).
        mode = os.stat("/dev/fuse").st_mode
        if mode & 0o666 != 0o666:
            os.chmod("/dev/fuse", stat.S_IMODE(mode) | 0o666)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    reasons = {
        "needs_root": (not is_root(), "needs root"),
        "needs_userns": (not userns_works(), "unprivileged user namespaces are unavailable"),
        "needs_fuse": (not fuse_usable(), "no FUSE for users (or no squashfuse_ll)"),
        "needs_gpu": (shutil.which("nvidia-smi") is None,
                      expected("no NVIDIA GPU on this host")),
        "needs_shared": (not INTEROP.is_dir(), expected(f"{INTEROP} is absent")),
    }
    for item in items:
        for marker, (missing, reason) in reasons.items():
            if missing and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    del item, call
    outcome = yield
    enforce(outcome.get_result())  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def homes_left_as_found() -> Iterator[None]:
    """Every identity runs capsa with a HOME of this session's
    (support.users.private_home); the test users' real homes must end the
    session as they began it (support.homes)."""
    from support import homes

    if is_root():
        watch_test_homes()
    yield
    remove_private_homes()
    problems = homes.check(repair=STRICT)
    if problems:
        done = "now repaired" if STRICT else "left as they are: another session may own them"
        pytest.fail(f"the tests changed users' homes ({done}):\n  "
                    + "\n  ".join(problems[:40]), pytrace=False)


@pytest.fixture(scope="session")
def source_copy() -> Iterator[Path]:
    """capsa's sources copied where any user can read them (removed afterwards)."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    dest = Path(tempfile.mkdtemp(prefix="src-", dir=SCRATCH))
    shutil.copytree(SRC / "capsa", dest / "capsa",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(Path(__file__).parent / "support" / "site_entry.py",
                dest / f"{ENTRY_MODULE}.py")
    for root, dirs, files in os.walk(dest):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    os.chmod(dest, 0o755)
    write_programs(dest)
    yield dest
    shutil.rmtree(dest, ignore_errors=True)


@pytest.fixture(scope="session")
def test_user() -> User:
    if not is_root():
        pytest.skip("creating the unprivileged test user needs root")
    return ensure_test_user()


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory under SCRATCH, mode 1777, removed afterwards."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    os.chmod(SCRATCH, 0o1777)
    path = Path(tempfile.mkdtemp(prefix="t-", dir=SCRATCH))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def capsa(source_copy: Path) -> Capsa:
    return Capsa(current_user(), source_copy)


@pytest.fixture
def capsa_user(source_copy: Path, test_user: User) -> Capsa:
    return Capsa(test_user, source_copy)


@pytest.fixture(params=["root", "user"])
def any_capsa(request: pytest.FixtureRequest, source_copy: Path) -> Capsa:
    """The CLI as root and as the unprivileged test user."""
    if request.param == "root":
        if not is_root():
            pytest.skip("not running as root")
        return Capsa(current_user(), source_copy)
    if not is_root():
        return Capsa(current_user(), source_copy)
    return Capsa(ensure_test_user(), source_copy)


@pytest.fixture(scope="session")
def nosub_user() -> User:
    if not is_root():
        pytest.skip("creating the unprivileged test users needs root")
    return ensure_user_without_subids()


@pytest.fixture
def capsa_nosub(source_copy: Path, nosub_user: User) -> Capsa:
    """The CLI as an unprivileged user without subordinate ids."""
    return Capsa(nosub_user, source_copy)


@pytest.fixture(params=["root", "subuid", "no-subuid"])
def every_capsa(request: pytest.FixtureRequest, source_copy: Path) -> Capsa:
    """The CLI as root, as a user with a range of subordinate ids, and as a
    user without one: the three ways a build or ``--fakeroot`` runs."""
    if not is_root():
        pytest.skip("the three identities need root to set up")
    if request.param == "root":
        return Capsa(current_user(), source_copy)
    if request.param == "subuid":
        return Capsa(ensure_test_user(), source_copy)
    return Capsa(ensure_user_without_subids(), source_copy)


@pytest.fixture
def reports() -> Iterator[list[tuple[int, str, str]]]:
    """What the library reports (level, reporter, message) while a test runs."""
    from capsa import report

    seen: list[tuple[int, str, str]] = []
    report.configure(report.DEBUG, lambda level, name, message: seen.append(
        (level, name, message)))
    yield seen
    report.configure(report.INFO, None)


@pytest.fixture
def interop() -> Path:
    if not INTEROP.is_dir():
        pytest.skip(expected(f"{INTEROP} is absent"))
    return INTEROP
