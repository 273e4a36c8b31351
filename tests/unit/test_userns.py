"""capsa.userns below the CLI: subordinate id tables, the choice of map, the
host's fakeroot, and entering a namespace for real (in a child process)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsa import userns
from capsa.userns import IdMap, IdRange


def _table(tmp_path: Path, text: str, name: str = "subuid") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_range_by_name_or_uid_capped_at_apptainer_count(tmp_path: Path) -> None:
    table = _table(tmp_path, "other:100000:65536\nalice:200000:1000000\n1234:300000:10\n")
    assert userns.subordinate_range(table, "alice", 1000) == IdRange(1, 200000, 65536)
    assert userns.subordinate_range(table, "bob", 1234) == IdRange(1, 300000, 10)
    assert userns.subordinate_range(table, "carol", 1) is None


@pytest.mark.parametrize("line", ["alice:x:10", "alice:100000", "alice:100000:0",
                                  "alice:-5:10", "", "# alice:1:2:3"])
def test_malformed_lines_are_skipped(tmp_path: Path, line: str) -> None:
    table = _table(tmp_path, f"{line}\n")
    assert userns.subordinate_range(table, "alice", 1000) is None


def test_missing_table_means_no_range(tmp_path: Path) -> None:
    assert userns.subordinate_range(str(tmp_path / "absent"), "alice", 1000) is None


@given(st.text(max_size=300))
def test_any_table_text_gives_a_range_or_none(text: str) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile("w", delete=False) as handle:
        handle.write(text)
    try:
        found = userns.subordinate_range(handle.name, "alice", 1000)
    finally:
        os.unlink(handle.name)
    assert found is None or (found.inside == 1 and 0 < found.size <= userns.RANGE_COUNT)


def test_fakeroot_map_over_subordinate_ids(tmp_path: Path) -> None:
    subuid = _table(tmp_path, "alice:100000:65536\n")
    subgid = _table(tmp_path, "alice:300000:65536\n", "subgid")
    found = userns.fakeroot_map(1000, 1000, "alice", "alice", subuid_file=subuid,
                                subgid_file=subgid, helpers=True)
    assert found.kind == "subuid" and found.wide and found.root_inside
    assert found.uids == (IdRange(0, 1000, 1), IdRange(1, 100000, 65536))
    assert found.gids == (IdRange(0, 1000, 1), IdRange(1, 300000, 65536))
    assert "0->1000, 1-65536->100000-165535" in found.describe()


@pytest.mark.parametrize("subuid,subgid,helpers", [
    ("", "alice:1:5\n", True),             # no uid range
    ("alice:1:5\n", "", True),             # no gid range
    ("alice:1:5\n", "alice:1:5\n", False),  # no newuidmap/newgidmap
])
def test_fakeroot_map_falls_back_to_root_mapped(tmp_path: Path, subuid: str, subgid: str,
                                                helpers: bool) -> None:
    found = userns.fakeroot_map(1000, 1000, "alice", "alice",
                                subuid_file=_table(tmp_path, subuid),
                                subgid_file=_table(tmp_path, subgid, "subgid"),
                                helpers=helpers)
    assert found == userns.root_mapped(1000, 1000)
    assert not found.wide and "root-mapped" in found.describe()


def test_gid_range_by_group_name(tmp_path: Path) -> None:
    found = userns.fakeroot_map(1000, 2000, "alice", "staff",
                                subuid_file=_table(tmp_path, "alice:100000:10\n"),
                                subgid_file=_table(tmp_path, "staff:500000:10\n", "subgid"),
                                helpers=True)
    assert found.gids[1] == IdRange(1, 500000, 10)


def test_fakeroot_script_is_read_for_its_parts(tmp_path: Path) -> None:
    faked = tmp_path / "bin" / "faked-sysv"
    lib = tmp_path / "lib" / "libfakeroot" / "libfakeroot-sysv.so"
    faked.parent.mkdir()
    lib.parent.mkdir(parents=True)
    faked.write_text("")
    faked.chmod(0o755)
    lib.write_text("")
    script = tmp_path / "fakeroot-sysv"
    script.write_text(f"""#!/bin/sh
FAKEROOT_PREFIX={tmp_path}
FAKEROOT_BINDIR=${{FAKEROOT_PREFIX}}/bin
FAKEROOT_LIB=libfakeroot-sysv.so
PATHS={tmp_path}/nowhere:${{FAKEROOT_PREFIX}}/lib/libfakeroot
FAKED=${{FAKEROOT_BINDIR}}/faked-sysv
""")
    tool = userns._fakeroot_parts(str(script))
    assert tool is not None
    assert (tool.script, tool.faked, tool.library) == (str(script), str(faked), str(lib))


def test_a_script_naming_nothing_usable_is_no_fakeroot(tmp_path: Path) -> None:
    script = tmp_path / "fakeroot"
    script.write_text("#!/bin/sh\nFAKED=/nonexistent/faked\nFAKEROOT_LIB=lib.so\n")
    assert userns._fakeroot_parts(str(script)) is None


@pytest.mark.skipif(shutil.which("fakeroot-sysv") is None, reason="fakeroot is not installed")
def test_the_hosts_fakeroot_is_found() -> None:
    tool = userns.find_fakeroot()
    assert tool is not None
    assert os.access(tool.faked, os.X_OK) and os.path.isfile(tool.library)
    assert tool.interpreter.startswith("/") and os.path.exists(tool.interpreter)


def test_elf_interpreter_of_static_and_dynamic_programs(tmp_path: Path) -> None:
    assert userns.elf_interpreter("/bin/sh").startswith("/lib")
    if os.path.exists("/bin/busybox"):  # busybox-static
        assert userns.elf_interpreter("/bin/busybox") == ""
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF\x02\x01" + b"\xff" * 100)
    assert userns.elf_interpreter(str(junk)) == ""
    assert userns.elf_interpreter(str(tmp_path / "absent")) == ""


def test_host_namespace_is_the_initial_one() -> None:
    assert userns.in_initial_namespace()
    assert userns.current_map() is None


def _in_child(idmap: IdMap) -> tuple[str, str]:
    """Enter *idmap* in a forked child; its view of its maps."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            userns.enter(idmap)
            current = userns.current_map()
            text = f"{os.geteuid()}|{current.describe() if current else ''}"
            os.write(write_end, text.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        text = stream.read()
    _pid, status = os.waitpid(pid, 0)
    assert status == 0, text
    euid, described = text.split("|")
    return euid, described


def test_enter_a_root_mapped_namespace() -> None:
    euid, described = _in_child(userns.root_mapped(os.getuid(), os.getgid()))
    assert euid == "0" and f"0->{os.getuid()}" in described
