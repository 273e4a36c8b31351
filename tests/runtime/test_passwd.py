"""Unit tests: generated /etc/passwd and /etc/group, and in-root path resolution."""

from __future__ import annotations

import os
from pathlib import Path

from capsa.runtime.mounts import resolve_in_root
from capsa.runtime.passwd import group_text, passwd_text
from capsa.runtime.spec import Identity

WHO = Identity(1001, 1001, (27, 4242), "alice", "Alice A", "/home/alice", "/bin/bash")


def test_passwd_appends_the_caller() -> None:
    text = passwd_text("root:x:0:0:root:/root:/bin/sh\n", WHO, "/home/alice")
    assert text.splitlines() == ["root:x:0:0:root:/root:/bin/sh",
                                 "alice:x:1001:1001:Alice A:/home/alice:/bin/bash"]


def test_passwd_replaces_same_name_or_uid() -> None:
    image = "root:x:0:0::/root:/bin/sh\nalice:x:5:5::/x:/bin/sh\nbob:x:1001:1001::/b:/bin/sh\n"
    lines = passwd_text(image, WHO, "/custom").splitlines()
    assert lines == ["root:x:0:0::/root:/bin/sh",
                     "alice:x:1001:1001:Alice A:/custom:/bin/bash"]


def test_group_adds_membership_and_missing_groups() -> None:
    image = "root:x:0:\nsudo:x:27:bob\nalice:x:1001:\n"
    text = group_text(image, WHO, {1001: "alice", 27: "sudo", 4242: "lab"})
    assert text.splitlines() == ["root:x:0:", "sudo:x:27:bob,alice", "alice:x:1001:",
                                 "lab:x:4242:alice"]


def test_resolve_in_root_confines_links(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink("/../../../host/secret", tmp_path / "etc" / "escape")
    os.symlink("../usr/share/zoneinfo/UTC", tmp_path / "etc" / "localtime")
    os.symlink("loop", tmp_path / "loop")
    assert resolve_in_root(str(tmp_path), "/etc/escape") == "/host/secret"
    assert resolve_in_root(str(tmp_path), "/etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert resolve_in_root(str(tmp_path), "/a/../../etc/./x") == "/etc/x"


def test_resolve_in_root_stops_link_loops(tmp_path: Path) -> None:
    import pytest

    from capsa.errors import ContainerError

    os.symlink("/loop", tmp_path / "loop")
    with pytest.raises(ContainerError):
        resolve_in_root(str(tmp_path), "/loop/x")
