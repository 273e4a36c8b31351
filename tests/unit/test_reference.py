"""Reference parsing and normalisation, as Docker does it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsa.errors import UsageError
from capsa.reference import Reference, parse_reference, strip_scheme

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "expected", "qualified"), [
    ("alpine", "docker.io/library/alpine:latest", False),
    ("docker://alpine", "docker.io/library/alpine:latest", False),
    ("alpine:3.19", "docker.io/library/alpine:3.19", False),
    ("user/image", "docker.io/user/image:latest", False),
    ("docker.io/alpine", "docker.io/library/alpine:latest", True),
    ("index.docker.io/library/alpine:edge", "docker.io/library/alpine:edge", True),
    ("registry-1.docker.io/x/y", "docker.io/x/y:latest", True),
    ("localhost/foo", "localhost/foo:latest", True),
    ("localhost:5000/foo/bar:1.0", "localhost:5000/foo/bar:1.0", True),
    ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest", True),
    ("quay.io/org/sub/img:v1", "quay.io/org/sub/img:v1", True),
    (f"alpine@{DIGEST}", f"docker.io/library/alpine@{DIGEST}", False),
    (f"ghcr.io/a/b:t@{DIGEST}", f"ghcr.io/a/b:t@{DIGEST}", True),
    ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest", False),
    ("[::1]:5000/img", "[::1]:5000/img:latest", True),
])
def test_normalises_like_docker(text: str, expected: str, qualified: bool) -> None:
    ref = parse_reference(text)
    assert str(ref) == expected
    assert ref.qualified is qualified


def test_parts() -> None:
    ref = parse_reference("docker://127.0.0.1:5000/a/busybox:v1")
    assert ref.registry == "127.0.0.1:5000"
    assert ref.repository == "a/busybox"
    assert ref.tag == "v1" and ref.digest is None
    assert ref.reference == "v1"
    assert ref.short_name == "busybox"
    assert ref.api_host == "127.0.0.1:5000"
    assert parse_reference("alpine").api_host == "registry-1.docker.io"


def test_digest_is_what_is_fetched() -> None:
    ref = parse_reference(f"alpine:3@{DIGEST}")
    assert ref.reference == DIGEST
    assert parse_reference(f"alpine@{DIGEST}").tag is None


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("docker://", "empty"),
    ("Alpine", "lowercase"),
    ("alpine:", "invalid tag"),
    ("alpine:bad/tag", "invalid"),
    ("alpine:" + "x" * 129, "invalid tag"),
    ("a@sha256:123", "invalid digest"),
    ("a@md5:" + "0" * 32 + "!", "invalid digest"),
    ("a//b", "invalid repository"),
    ("a/../b", "invalid repository"),
    ("-a", "invalid repository"),
    ("a b", "invalid"),
    ("exa_mple.com:5000/x", "invalid registry host"),
    ("host:99999999/x", "invalid registry host"),
    ("x/" + "a" * 260, "longer than 255"),
])
def test_rejects_with_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_reference(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_strip_scheme() -> None:
    assert strip_scheme("docker://a") == "a"
    assert strip_scheme("oras://a/b") == "a/b"
    assert strip_scheme("a") == "a"


def test_with_location_keeps_tag_and_digest() -> None:
    ref = parse_reference(f"alpine:1@{DIGEST}")
    moved = ref.with_location("mirror.test", "library/alpine")
    assert str(moved) == f"mirror.test/library/alpine:1@{DIGEST}"


# No dots: a first component with a dot names a registry host (tested above).
_component = st.from_regex(r"[a-z0-9]{1,8}(?:(?:_|__|-+)[a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_host = st.sampled_from(["quay.io", "localhost:5000", "127.0.0.1:80", "a.b.c"])


@given(st.one_of(st.none(), _host), st.lists(_component, min_size=1, max_size=3),
       st.one_of(st.none(), _tag))
def test_round_trip(host: str | None, parts: list[str], tag: str | None) -> None:
    path = "/".join(parts)
    text = (f"{host}/" if host else "") + path + (f":{tag}" if tag else "")
    ref = parse_reference(text)
    assert ref.tag == (tag or "latest")
    assert ref.qualified is (host is not None)
    again = parse_reference(str(ref))
    assert again.name == ref.name and again.reference == ref.reference


@given(st.text(max_size=80))
def test_never_crashes(text: str) -> None:
    try:
        ref = parse_reference(text)
    except UsageError as err:
        assert "\n" not in str(err) or "\n" in text
        return
    assert isinstance(ref, Reference)
    assert ref.repository == ref.repository.lower()
