"""The real client programs, from PyPI, driving this copy of capsa.

scripts/install-deps installs them into their own virtual environment
(``$CAPSA_CLIENTS``, default /opt/capsa/clients); the tests skip with the
reason where it is missing.  A client finds ``apptainer``, ``singularity``
and ``run-singularity`` on PATH: the programs of the source copy
(support.cli.write_programs) come first there.  Images come from the
suite's local registry, over plain HTTP (``APPTAINER_NOHTTPS=1``, as users
of such registries set it: the clients have no option for it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ocibuild
from support.cli import Capsa
from support.env import CLIENTS, SCRATCH
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)
from support.users import User

pytestmark = pytest.mark.needs_userns


@dataclass(frozen=True)
class Client:
    """Runs client programs as *user*, with capsa's programs first on PATH."""

    user: User
    programs: Path
    workdir: Path

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = self.user.test_env()
        env.update({
            "PATH": f"{self.programs}:{CLIENTS / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "APPTAINER_NOHTTPS": "1",
            "APPTAINER_CACHEDIR": str(self.workdir / "cache"),
            "XDG_CACHE_HOME": str(self.workdir / "xdg-cache"),
            "TMPDIR": str(self.workdir / "tmp"),
            # instances live here, so that tests neither see nor leave any elsewhere
            "APPTAINER_CONFIGDIR": str(self.workdir / "apptainer"),
        })
        env.update(extra or {})
        return env

    def run(self, *argv: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
        full = self.env(env)
        wrapped = self.user.wrap(list(argv))
        if wrapped[0] == "setpriv":  # --reset-env: the environment through env(1)
            at = wrapped.index("--reset-env") + 1
            wrapped = [*wrapped[:at], "env", "-i", *(f"{k}={v}" for k, v in full.items()),
                       *wrapped[at:]]
        return subprocess.run(wrapped, cwd=str(cwd or self.workdir), env=full, text=True,
                              capture_output=True, timeout=timeout)

    def python(self, script: str, *args: str, cwd: Path | None = None,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(str(CLIENTS / "bin" / "python"), "-c", script, *args, cwd=cwd, env=env)


@pytest.fixture(scope="session")
def clients_installed() -> Path:
    if not (CLIENTS / "bin" / "python").exists():
        pytest.skip(f"the client programs are not installed in {CLIENTS} "
                    "(scripts/install-deps installs them)")
    return CLIENTS


@pytest.fixture(scope="session")
def busybox_ref(plain_registry: Registry) -> Iterator[str]:  # noqa: F811
    """``127.0.0.1:PORT/clients/busybox:1.0`` in the suite's registry."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="clients-", dir=SCRATCH))
    ocibuild.busybox_layout(base / "busybox", "1.0")
    plain_registry.push_oci_layout(base / "busybox", "clients/busybox:1.0")
    yield f"{plain_registry.host}/clients/busybox:1.0"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def client(any_capsa: Capsa, clients_installed: Path, scratch: Path) -> Iterator[Client]:
    """The client programs as root and as the unprivileged test user, in a
    work directory that user owns; instances a test leaves are stopped."""
    del clients_installed
    work = scratch / "work"
    for path in (work, work / "tmp"):
        path.mkdir()
        any_capsa.user.own(path)
    os.chmod(scratch, 0o755)
    helper = Client(any_capsa.user, any_capsa.pythonpath / "bin", work)
    yield helper
    helper.run("apptainer", "instance", "stop", "--all", "--force")
