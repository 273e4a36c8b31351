"""Sans-I/O authentication: challenges, token requests, token answers."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsa.errors import AuthError, RegistryError
from capsa.registry.auth import (
    AuthCache,
    Challenge,
    Token,
    basic_header,
    parse_challenges,
    parse_token_response,
    pick_challenge,
    token_request,
)
from capsa.registry.credentials import Credentials

HUB = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
       'scope="repository:library/alpine:pull"')


def test_docker_hub_challenge() -> None:
    [ch] = parse_challenges(HUB)
    assert ch.scheme == "bearer"
    assert ch.get("realm") == "https://auth.docker.io/token"
    assert ch.get("service") == "registry.docker.io"
    assert ch.get("scope") == "repository:library/alpine:pull"
    assert ch.get("missing", "x") == "x"


@pytest.mark.parametrize(("header", "expected"), [
    ('Basic realm="Registry Realm"', [("basic", [("realm", "Registry Realm")])]),
    ("basic", [("basic", [])]),
    ('Basic realm="a", Bearer realm="b",service="s"',
     [("basic", [("realm", "a")]), ("bearer", [("realm", "b"), ("service", "s")])]),
    ('Bearer realm="q\\"uote"', [("bearer", [("realm", 'q"uote')])]),
    ("Bearer realm=unquoted, error=invalid_token",
     [("bearer", [("realm", "unquoted"), ("error", "invalid_token")])]),
    ('BEARER REALM="x"', [("bearer", [("realm", "x")])]),
    ("Negotiate abc==", [("negotiate", [("token68", "abc==")])]),
    ("Negotiate abc==, Basic realm=\"r\"",
     [("negotiate", [("token68", "abc==")]), ("basic", [("realm", "r")])]),
    ("", []),
    ('Bearer realm="unterminated', [("bearer", [])]),
])
def test_parse_challenges(header: str, expected: list[tuple[str, list[tuple[str, str]]]]) -> None:
    got = [(c.scheme, list(c.params)) for c in parse_challenges(header)]
    assert got == expected


def test_pick_prefers_bearer() -> None:
    picked = pick_challenge(parse_challenges('Basic realm="a", Bearer realm="b"'))
    assert picked is not None and picked.scheme == "bearer"
    assert pick_challenge(parse_challenges("Negotiate")) is None


_value = st.text(st.characters(exclude_categories=["Cs"], exclude_characters='"\\'),
                 max_size=30)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), _value,
                       min_size=1, max_size=4))
def test_quoted_params_round_trip(params: dict[str, str]) -> None:
    header = "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    [ch] = parse_challenges(header)
    assert dict(ch.params) == params


@given(st.text(max_size=200))
def test_parser_never_crashes(header: str) -> None:
    for ch in parse_challenges(header):
        assert ch.scheme == ch.scheme.lower()


def test_token_request_anonymous_and_with_credentials() -> None:
    ch = parse_challenges(HUB)[0]
    req = token_request(ch, ["repository:library/alpine:pull"], None)
    parts = urllib.parse.urlsplit(req.url)
    query = urllib.parse.parse_qs(parts.query)
    assert parts.netloc == "auth.docker.io" and parts.path == "/token"
    assert query == {"service": ["registry.docker.io"],
                     "scope": ["repository:library/alpine:pull"]}
    assert "Authorization" not in req.headers
    req = token_request(ch, ["repository:x:pull,push"], Credentials("u", "p"))
    assert req.headers["Authorization"] == basic_header(Credentials("u", "p"))
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(req.url).query)["scope"] == [
        "repository:x:pull,push", "repository:library/alpine:pull"]


def test_token_request_keeps_realm_query() -> None:
    ch = Challenge("bearer", (("realm", "https://a.test/t?x=1"),))
    assert urllib.parse.urlsplit(token_request(ch, [], None).url).query == "x=1"


@pytest.mark.parametrize("realm", ["", "ftp://x/y", "/relative"])
def test_unusable_realm(realm: str) -> None:
    with pytest.raises(RegistryError, match="realm"):
        token_request(Challenge("bearer", (("realm", realm),)), [], None)


def test_basic_header() -> None:
    assert basic_header(Credentials("aladdin", "opensesame")) == \
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l"


def test_parse_token_response() -> None:
    tok = parse_token_response(200, json.dumps({"token": "t", "expires_in": 300}).encode(),
                               "r", now=1000.0)
    assert tok == Token("t", 1300.0)
    tok = parse_token_response(200, b'{"access_token": "a"}', "r", now=0.0)
    assert tok.value == "a" and tok.expires_at == 60.0  # at least a minute


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (401, b"", AuthError, "refused"),
    (403, b"", AuthError, "refused"),
    (500, b"", RegistryError, "HTTP 500"),
    (200, b"not json", RegistryError, "unreadable"),
    (200, b"[]", RegistryError, "unreadable"),
    (200, b"{}", RegistryError, "no token"),
    (200, b'{"token": 5}', RegistryError, "no token"),
])
def test_bad_token_responses(status: int, body: bytes, error: type[Exception],
                             text: str) -> None:
    with pytest.raises(error, match=text):
        parse_token_response(status, body, "https://realm")


def test_auth_cache() -> None:
    cache = AuthCache()
    creds = Credentials("u", "p")
    assert cache.header("h", "s", creds) is None
    cache.remember("h", Challenge("basic"))
    assert cache.header("h", "s", creds) == basic_header(creds)
    assert cache.header("h", "s", None) is None
    cache.remember("h", Challenge("bearer", (("realm", "https://r"),)))
    assert cache.header("h", "s", creds) is None
    cache.store_token("h", "s", Token("tok", 1000.0))
    assert cache.header("h", "s", creds, now=900.0) == "Bearer tok"
    assert cache.header("h", "other", creds, now=900.0) is None
    assert cache.header("h", "s", creds, now=990.0) is None  # about to expire
