"""Network namespaces: what Apptainer does for each network type that needs no
CNI plugin, and one clear FATAL or WARNING for the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Capsa

pytestmark = pytest.mark.needs_userns

_UNPRIVILEGED = ("FATAL:   container creation failed: network requires root or a suid "
                 "installation with /etc/subuid --fakeroot; non-root users can only use "
                 "--network=none unless permitted by the administrator\n")


def _interfaces(capsa: Capsa, image: Path, *flags: str, env: dict[str, str] | None = None
                ) -> tuple[int, str, str]:
    result = capsa("exec", *flags, str(image), "ls", "/sys/class/net", env=env)
    return result.returncode, result.stdout, result.stderr


def test_network_none_has_only_loopback(any_capsa: Capsa, images: dict[str, Path]) -> None:
    assert _interfaces(any_capsa, images["sif"], "--net", "--network", "none") == \
        (0, "lo\n", "")
    assert _interfaces(any_capsa, images["sif"], "-n", "--network=none") == (0, "lo\n", "")
    assert _interfaces(any_capsa, images["sif"],
                       env={"APPTAINER_NET": "1", "APPTAINER_NETWORK": "none"}) == \
        (0, "lo\n", "")


def test_network_implies_net(any_capsa: Capsa, images: dict[str, Path]) -> None:
    code, out, err = _interfaces(any_capsa, images["sif"], "--network", "none")
    assert (code, out) == (0, "lo\n")
    assert err == "INFO:    Setting --net (required by --network)\n"


def test_network_args_with_none_are_ignored_as_apptainer_does(
        any_capsa: Capsa, images: dict[str, Path]) -> None:
    # singularity-compose's default for users: --net --network none --network-args "IP=..."
    code, out, err = _interfaces(any_capsa, images["sif"], "--net", "--network", "none",
                                 "--network-args", '"IP=10.22.0.2"')
    assert (code, out, err) == (0, "lo\n", "")


def test_bare_net_is_a_bridge_network(any_capsa: Capsa, images: dict[str, Path],
                                      scratch: Path) -> None:
    any_capsa.user.own(scratch)
    for flags in (("--net",), ("--net", "--network", "bridge"), ("--network", "ptp"),
                  ("--network-args", "portmap=8080:80/tcp")):
        result = any_capsa("exec", *flags, str(images["sif"]), "touch", f"{scratch}/ran",
                           cwd=scratch)
        assert result.returncode == 255, result
        assert result.stdout == ""
        fatal = result.stderr.splitlines()[-1] + "\n"
        if any_capsa.user.is_root:
            assert fatal.startswith("FATAL:   container creation failed: network setup "
                                    "failed: the "), result
            assert "needs CNI plugins" in fatal
        else:
            assert fatal == _UNPRIVILEGED, result
        assert not (scratch / "ran").exists()
        assert sorted(p.name for p in scratch.iterdir()) == []


def test_fakeroot_falls_back_to_none(any_capsa: Capsa, images: dict[str, Path]) -> None:
    code, out, err = _interfaces(any_capsa, images["sif"], "--fakeroot", "--net")
    assert (code, out) == (0, "lo\n"), err
    assert err == ("WARNING: fakeroot with unprivileged installation or 'allow setuid = no' "
                   "could not use 'fakeroot' network, fallback to 'none' network\n")
