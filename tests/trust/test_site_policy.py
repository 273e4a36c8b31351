"""Problem 2: the site's signing policy binds every user.

The site's ``capsa.conf`` (root-owned) requires images signed by the site's
key.  A user tries every way around it that used to work: a configuration
file of their own that says ``no``, their own key through the flag, through
the environment, through a configuration file, and environment variables
naming another configuration directory.  Each must be refused; the site's
signed image must still run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa
from support.site import site_env
from support.users import User
from trust import figures
from trust.conftest import scratch_dir

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="module")
def site(signed_images: dict[str, Path]) -> Iterator[dict[str, Path]]:
    base = scratch_dir("trust-site-")
    site_dir = base / "etc-capsa"
    site_dir.mkdir(mode=0o755)
    (site_dir / "capsa.conf").write_text(
        f"require signed images = yes\nsignature keyring = {signed_images['site_key']}\n")
    (site_dir / "capsa.conf").chmod(0o644)
    mine = base / "mine"  # what any user could write
    mine.mkdir(mode=0o755)
    (mine / "relaxed.conf").write_text("require signed images = no\n")
    (mine / "capsa.conf").write_text("require signed images = no\n")
    (mine / "own-key.conf").write_text(
        f"require signed images = yes\nsignature keyring = {signed_images['user_key']}\n")
    for path in mine.iterdir():
        path.chmod(0o644)
    yield {"dir": site_dir, "mine": mine}
    shutil.rmtree(base, ignore_errors=True)


Attempt = tuple[list[str], list[str], dict[str, str], Path]


def _overrides(images: dict[str, Path], mine: Path) -> list[Attempt]:
    """(global flags, exec flags, environment, image) for each way around."""
    user_key = str(images["user_key"])
    return [
        (["-c", str(mine / "relaxed.conf")], [], {}, images["evil"]),
        ([f"--config={mine / 'relaxed.conf'}"], [], {}, images["evil"]),
        (["-c", str(mine / "own-key.conf")], [], {}, images["self_signed"]),
        ([], ["--require-signed", user_key], {}, images["self_signed"]),
        ([], [], {"APPTAINER_REQUIRE_SIGNED": user_key}, images["self_signed"]),
        ([], [], {"CAPSA_CONFDIR": str(mine)}, images["evil"]),
        ([], [], {"APPTAINER_CONFIGDIR": str(mine), "SINGULARITY_CONFIGDIR": str(mine)},
         images["evil"]),
        ([], [], {}, images["evil"]),
    ]


def _exec(capsa: Capsa, attempt: Attempt, site_dir: Path) -> tuple[int, str, str]:
    global_flags, exec_flags, env, image = attempt
    result = capsa(*global_flags, "exec", *exec_flags, str(image), "cat", "/etc/marker",
                   env={**env, **site_env(config_dir=str(site_dir))})
    return result.returncode, result.stdout, result.stderr


def test_no_user_can_switch_the_site_policy_off(any_capsa: Capsa,
                                                signed_images: dict[str, Path],
                                                site: dict[str, Path]) -> None:
    accepted = []
    overrides = _overrides(signed_images, site["mine"])
    for attempt in overrides:
        code, out, err = _exec(any_capsa, attempt, site["dir"])
        if code == 0 or "evil" in out:
            accepted.append((attempt, out))
            continue
        assert code == 255 and err.startswith("FATAL:   ") and err.count("\n") == 1, err
        assert "is not signed by a key in" in err, err
    figures.add("policy", len(overrides), len(accepted))
    assert accepted == []


def test_the_sites_image_runs_whatever_the_user_adds(any_capsa: Capsa,
                                                     signed_images: dict[str, Path],
                                                     site: dict[str, Path]) -> None:
    signed = signed_images["signed"]
    for attempt in (([], [], {}, signed), (["-c", str(site["mine"] / "relaxed.conf")], [], {},
                                           signed),
                    ([], ["--require-signed", str(signed_images["site_key"])], {}, signed)):
        code, out, err = _exec(any_capsa, attempt, site["dir"])
        assert (code, out, err) == (0, "signed\n", ""), (attempt, code, err)
    # a requirement the user adds binds too: the site's image is not theirs
    code, out, err = _exec(any_capsa, ([], ["--require-signed", str(signed_images["user_key"])],
                                       {}, signed), site["dir"])
    assert code == 255 and f"not signed by a key in {signed_images['user_key']}" in err, err


@pytest.mark.parametrize("loose", ["file", "directory", "owner"])
def test_a_site_file_others_can_write_is_refused(any_capsa: Capsa, signed_images: dict[str, Path],
                                                 loose: str, hostile: User) -> None:
    """A weakened policy must not pass for the site's: a capsa.conf that other
    users can write (or replace) is a FATAL error, not a relaxed rule."""
    base = scratch_dir("trust-loose-")
    try:
        conf = base / "capsa.conf"
        conf.write_text("require signed images = no\n")
        conf.chmod(0o644)
        if loose == "file":
            conf.chmod(0o666)
        elif loose == "directory":
            base.chmod(0o777)
        else:
            os.chown(conf, hostile.uid, hostile.gid)
        code, out, err = _exec(any_capsa, ([], [], {}, signed_images["evil"]), base)
        assert code == 255 and out == "", err
        assert "refusing to use it" in err and err.count("\n") == 1, err
    finally:
        shutil.rmtree(base, ignore_errors=True)
