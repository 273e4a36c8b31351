"""Unit tests: -B / --mount parsing."""

from __future__ import annotations

import pytest

from capsa.errors import UsageError
from capsa.runtime.binds import parse_binds, parse_mount, split_bind_list
from capsa.runtime.spec import BindSpec


@pytest.mark.parametrize(("value", "expected"), [
    ("/a", [BindSpec("/a", "/a")]),
    ("/a:/b", [BindSpec("/a", "/b")]),
    ("/a:/b:ro", [BindSpec("/a", "/b", True)]),
    ("/a:/b:rw", [BindSpec("/a", "/b", False)]),
    ("/a:ro", [BindSpec("/a", "/a", True)]),
    ("/a,/b:/c:ro", [BindSpec("/a", "/a"), BindSpec("/b", "/c", True)]),
    ("/a:/b,ro,/c", [BindSpec("/a", "/b", True), BindSpec("/c", "/c")]),
    ("rel/dir:/x", [BindSpec("/work/rel/dir", "/x")]),
    ("/with\\,comma:/d\\:colon", [BindSpec("/with,comma", "/d:colon")]),
    ("/a/../b/:/c/", [BindSpec("/b", "/c")]),
])
def test_bind_specs(value: str, expected: list[BindSpec]) -> None:
    assert parse_binds([value], "/work") == expected


def test_several_flags_keep_order() -> None:
    assert parse_binds(["/a", "/b:/c"], "/") == [BindSpec("/a", "/a"), BindSpec("/b", "/c")]


@pytest.mark.parametrize("value", ["/a:/b:ro:x", "/a:relative", "/a:/b:bogus", ":/b",
                                   "/a:/b:id=2"])
def test_bad_bind_specs(value: str) -> None:
    with pytest.raises(UsageError):
        parse_binds([value], "/")


def test_empty_items_are_skipped() -> None:
    assert split_bind_list("/a,,/b,") == ["/a", "/b"]


@pytest.mark.parametrize(("value", "expected"), [
    ("type=bind,src=/a,dst=/b", BindSpec("/a", "/b")),
    ("type=bind,source=/a,destination=/b,ro", BindSpec("/a", "/b", True)),
    ('type=bind,"src=/a,b",target=/c,readonly', BindSpec("/a,b", "/c", True)),
    ("src=/a,dst=/b,readonly=false", BindSpec("/a", "/b", False)),
])
def test_mount_specs(value: str, expected: BindSpec) -> None:
    assert parse_mount(value, "/") == expected


@pytest.mark.parametrize("value", ["type=tmpfs,dst=/b", "type=bind,src=/a",
                                   "type=bind,src=/a,dst=/b,colour=red", "dst=/b"])
def test_bad_mount_specs(value: str) -> None:
    with pytest.raises(UsageError):
        parse_mount(value, "/")
