"""An unprivileged user for the tests, and running commands as it."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support import homes
from support.env import NO_SUBIDS_USER, SCRATCH, TEST_USER

# Every identity the suite runs capsa as gets a HOME of its own for the
# session (removed at its end): capsa's cache, keys and instances land
# there, never in a real home, so that the suite leaves every home as it
# found it (tests/conftest.py checks).  ``User.home`` stays the home of the
# password database: capsa binds it into containers and looks up registry
# credentials there; the few tests that use it there clean up after
# themselves.
PRIVATE_HOMES = SCRATCH / f"homes-{os.getpid()}"


@dataclass(frozen=True)
class User:
    """Who a command runs as: root (uid 0) or the test user."""

    name: str
    uid: int
    gid: int
    home: Path

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def wrap(self, argv: list[str]) -> list[str]:
        """*argv* run as this user (unchanged for the current user)."""
        if self.uid == os.geteuid():
            return argv
        return [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
            "--reset-env", *argv,
        ]

    def base_env(self) -> dict[str, str]:
        """A login environment, HOME the real one (benchmarks run peers so)."""
        return {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
        }

    def test_env(self) -> dict[str, str]:
        """What the tests run capsa with: HOME this session's own
        (:data:`PRIVATE_HOMES`)."""
        return {**self.base_env(), "HOME": str(private_home(self))}

    def own(self, path: Path) -> Path:
        """Give *path* to this user (so it can write there)."""
        os.chown(path, self.uid, self.gid)
        return path


def private_home(user: User) -> Path:
    """*user*'s HOME for this session (see :data:`PRIVATE_HOMES`)."""
    path = PRIVATE_HOMES / user.name
    if not path.is_dir():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        os.chmod(SCRATCH, 0o1777)
        PRIVATE_HOMES.mkdir(mode=0o755, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, user.uid, user.gid)
    return path


def watch_test_homes() -> None:
    """Have :mod:`support.homes` remember the test users' homes as they are."""
    for name in (TEST_USER, NO_SUBIDS_USER, HOSTILE_USER):
        try:
            homes.watch(Path(pwd.getpwnam(name).pw_dir))
        except KeyError:
            continue  # created later, and watched from then


def remove_private_homes() -> None:
    shutil.rmtree(PRIVATE_HOMES, ignore_errors=True)


def current_user() -> User:
    entry = pwd.getpwuid(os.geteuid())
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def ensure_test_user() -> User:
    """Create (once) and return the unprivileged test user, who has a range
    of subordinate ids (as sites give users for ``--fakeroot``)."""
    user = _ensure_user(TEST_USER)
    _ensure_subids(TEST_USER)
    return user


def ensure_user_without_subids() -> User:
    """A second unprivileged user with no range in /etc/subuid or /etc/subgid
    (``--fakeroot`` then falls back to a root-mapped namespace)."""
    user = _ensure_user(NO_SUBIDS_USER)
    _drop_subids(NO_SUBIDS_USER)
    return user


def _ensure_user(name: str) -> User:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name],
            check=True,
        )
        entry = pwd.getpwnam(name)
    home = Path(entry.pw_dir)
    home.mkdir(exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    homes.watch(home)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, home)


def _drop_subids(name: str) -> None:
    """useradd gives new users a range where /etc/login.defs says so: not this one."""
    for table in ("/etc/subuid", "/etc/subgid"):
        path = Path(table)
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        kept = [line for line in lines if not line.startswith(f"{name}:")]
        if kept != lines:
            path.write_text("".join(f"{line}\n" for line in kept))


def _ensure_subids(name: str) -> None:
    """Give the user a subordinate id range (for --fakeroot style tests)."""
    for table in ("/etc/subuid", "/etc/subgid"):
        path = Path(table)
        lines = path.read_text().splitlines() if path.exists() else []
        if not any(line.startswith(f"{name}:") for line in lines):
            with path.open("a") as out:
                out.write(f"{name}:200000:65536\n")


HOSTILE_USER = "capsaevil"


def ensure_hostile_user() -> User:
    """Create (once) and return a second unprivileged user, who attacks what
    the test user uses (a shared cache, a shared directory)."""
    try:
        entry = pwd.getpwnam(HOSTILE_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group",
                        HOSTILE_USER], check=True)
        entry = pwd.getpwnam(HOSTILE_USER)
    home = Path(entry.pw_dir)
    home.mkdir(exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    homes.watch(home)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, home)
