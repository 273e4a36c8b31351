"""registries.conf: search registries, insecure, blocked, mirrors, prefixes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from capsa.errors import FormatError, UsageError
from capsa.reference import parse_reference
from capsa.registry.config import (
    SYSTEM_CONF,
    RegistriesConfig,
    default_paths,
    load,
    parse,
)

DIGEST = "sha256:" + "12" * 32

CONF = """
unqualified-search-registries = ["quay.io", "docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "mirror.local:5000"
insecure = true

[[registry.mirror]]
location = "digests.local/hub"
pull-from-mirror = "digest-only"

[[registry]]
location = "plain.local:5000"
insecure = true

[[registry]]
prefix = "example.com/foo"
location = "internal.test/mirror/foo"

[[registry]]
location = "evil.test"
blocked = true

[[registry]]
prefix = "*.wild.test"
insecure = true
"""


@pytest.fixture
def config() -> RegistriesConfig:
    return parse(tomllib.loads(CONF))


def test_search_candidates(config: RegistriesConfig) -> None:
    got = [str(r) for r in config.candidates(parse_reference("alpine"))]
    assert got == ["quay.io/alpine:latest", "docker.io/library/alpine:latest"]
    got = [str(r) for r in config.candidates(parse_reference("org/x:1"))]
    assert got == ["quay.io/org/x:1", "docker.io/org/x:1"]
    assert [str(r) for r in config.candidates(parse_reference("ghcr.io/a/b"))] == [
        "ghcr.io/a/b:latest"]


def test_no_search_means_docker_hub() -> None:
    ref = parse_reference("alpine")
    assert RegistriesConfig().candidates(ref) == [ref]


def test_mirrors_first(config: RegistriesConfig) -> None:
    eps = config.endpoints(parse_reference("docker.io/library/alpine:3"))
    assert [(str(e.reference), e.insecure, e.mirror) for e in eps] == [
        ("mirror.local:5000/library/alpine:3", True, True),
        ("docker.io/library/alpine:3", False, False),
    ]
    eps = config.endpoints(parse_reference(f"docker.io/library/alpine@{DIGEST}"))
    assert [str(e.reference) for e in eps] == [
        f"mirror.local:5000/library/alpine@{DIGEST}",
        f"digests.local/hub/library/alpine@{DIGEST}",
        f"docker.io/library/alpine@{DIGEST}",
    ]


def test_prefix_rewrite(config: RegistriesConfig) -> None:
    [ep] = config.endpoints(parse_reference("example.com/foo/bar:1"))
    assert str(ep.reference) == "internal.test/mirror/foo/bar:1"
    [ep] = config.endpoints(parse_reference("example.com/foobar:1"))
    assert str(ep.reference) == "example.com/foobar:1"


def test_insecure(config: RegistriesConfig) -> None:
    assert config.is_insecure("plain.local:5000")
    assert config.is_insecure("mirror.local:5000")
    assert config.is_insecure("x.wild.test")
    assert not config.is_insecure("wild.test")
    assert not config.is_insecure("docker.io")
    assert not config.is_insecure("unknown.test")


def test_blocked(config: RegistriesConfig) -> None:
    with pytest.raises(UsageError, match="blocked"):
        config.endpoints(parse_reference("evil.test/x"))


def test_v1_format() -> None:
    conf = parse(tomllib.loads("""
[registries.search]
registries = ["reg.test"]
[registries.insecure]
registries = ["plain.test:5000"]
[registries.block]
registries = ["bad.test"]
"""))
    assert conf.search == ("reg.test",)
    assert conf.is_insecure("plain.test:5000")
    with pytest.raises(UsageError):
        conf.endpoints(parse_reference("bad.test/x"))


@pytest.mark.parametrize(("text", "message"), [
    ('unqualified-search-registries = "quay.io"', "list of strings"),
    ("registry = 5", "array of tables"),
    ("[[registry]]\ninsecure = true", "location or a prefix"),
    ('[[registry]]\nlocation = "a"\ninsecure = "yes"', "true or false"),
    ('[[registry]]\nlocation = "a"\n[[registry.mirror]]\ninsecure = true', "needs a location"),
    ('[[registry]]\nlocation = "a"\n[[registry.mirror]]\nlocation = "b"\n'
     'pull-from-mirror = "x"', "pull-from-mirror"),
])
def test_bad_config(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse(tomllib.loads(text))


def test_load_merges_dropins(tmp_path: Path) -> None:
    main = tmp_path / "registries.conf"
    main.write_text(CONF)
    drop = tmp_path / "50-override.conf"
    drop.write_text('unqualified-search-registries = ["only.test"]\n'
                    '[[registry]]\nlocation = "docker.io"\ninsecure = true\n')
    conf = load([main, drop, tmp_path / "missing.conf"])
    assert conf.search == ("only.test",)
    entry = conf.entry_for("docker.io/library/alpine")
    assert entry is not None and entry.insecure and not entry.mirrors
    assert conf.is_insecure("plain.local:5000")
    assert conf.sources == (main, drop)


def test_load_reports_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "registries.conf"
    path.write_text("this is = = not toml")
    with pytest.raises(FormatError, match="not valid TOML"):
        load([path])


def test_default_paths(tmp_path: Path) -> None:
    assert default_paths(tmp_path, {"CONTAINERS_REGISTRIES_CONF": "/x.conf"}) == [
        Path("/x.conf")]
    assert default_paths(tmp_path, {})[0] == SYSTEM_CONF
    user = tmp_path / ".config" / "containers" / "registries.conf"
    user.parent.mkdir(parents=True)
    user.write_text("")
    (user.parent / "registries.conf.d").mkdir()
    (user.parent / "registries.conf.d" / "b.conf").write_text("")
    (user.parent / "registries.conf.d" / "a.conf").write_text("")
    paths = default_paths(tmp_path, {})
    assert paths[0] == user
    assert paths[-2:] == [user.parent / "registries.conf.d" / n for n in ("a.conf", "b.conf")]
