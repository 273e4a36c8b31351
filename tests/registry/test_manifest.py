"""Manifest and index parsing, platforms."""

from __future__ import annotations

from typing import Any

import pytest

from capsa.digest import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Platform
from capsa.errors import FormatError, NotFoundError, UsageError
from capsa.registry import manifest as m

D = "sha256:" + "ab" * 32


def _desc(media_type: str = OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": D, "size": 10, **extra}


@pytest.mark.parametrize(("text", "platform"), [
    ("amd64", Platform("linux", "amd64")),
    ("arm64", Platform("linux", "arm64")),
    ("aarch64", Platform("linux", "arm64", "v8")),
    ("x86_64", Platform("linux", "amd64")),
    ("linux/arm/v7", Platform("linux", "arm", "v7")),
    ("linux/ppc64le", Platform("linux", "ppc64le")),
])
def test_parse_platform(text: str, platform: Platform) -> None:
    assert m.parse_platform(text) == platform


@pytest.mark.parametrize("text", ["", "a/b/c/d", "linux/", "/amd64"])
def test_bad_platform(text: str) -> None:
    with pytest.raises(UsageError):
        m.parse_platform(text)


def test_host_platform_is_linux() -> None:
    assert m.host_platform().os == "linux"


@pytest.mark.parametrize(("have", "want", "ok"), [
    (Platform("linux", "amd64"), Platform("linux", "amd64"), True),
    (Platform("linux", "arm64", "v8"), Platform("linux", "arm64"), True),
    (Platform("linux", "arm64"), Platform("linux", "arm64", "v8"), True),
    (Platform("linux", "arm", "v6"), Platform("linux", "arm", "v7"), True),
    (Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6"), False),
    (Platform("linux", "arm"), Platform("linux", "arm", "v7"), True),
    (Platform("linux", "amd64", "v3"), Platform("linux", "amd64"), True),
    (Platform("linux", "amd64", "v3"), Platform("linux", "amd64", "v2"), False),
    (Platform("linux", "amd64"), Platform("linux", "amd64", "v2"), True),
    (Platform("windows", "amd64"), Platform("linux", "amd64"), False),
])
def test_platform_matches(have: Platform, want: Platform, ok: bool) -> None:
    assert m.platform_matches(have, want) is ok


@pytest.mark.parametrize(("want", "variants"), [
    (Platform("linux", "arm64", "v8"), ("v8", "")),
    (Platform("linux", "arm64"), ("", "v8")),
    (Platform("linux", "arm", "v7"), ("v7", "v6", "v5", "")),
    (Platform("linux", "arm"), ("", "v8", "v7", "v6", "v5")),
    (Platform("linux", "amd64"), ("",)),
    (Platform("linux", "amd64", "v2"), ("v2", "")),
])
def test_wanted_variants_follow_containers_image(want: Platform,
                                                 variants: tuple[str, ...]) -> None:
    assert m.wanted_variants(want) == variants


def _index(*platforms: dict[str, str]) -> m.Index:
    doc = {"manifests": [_desc(platform=p) for p in platforms]}
    return m.parse_index(doc, OCI_INDEX)


def test_index_select_prefers_exact_variant() -> None:
    index = _index({"os": "linux", "architecture": "arm", "variant": "v6"},
                   {"os": "linux", "architecture": "arm", "variant": "v7"},
                   {"os": "unknown", "architecture": "unknown"})
    got = index.select(Platform("linux", "arm"))
    assert got.platform == Platform("linux", "arm", "v7")
    assert index.platforms() == ["linux/arm/v6", "linux/arm/v7"]


def test_index_select_missing_names_platforms() -> None:
    index = _index({"os": "linux", "architecture": "amd64"},
                   {"os": "linux", "architecture": "arm64", "variant": "v8"})
    with pytest.raises(NotFoundError) as err:
        index.select(Platform("linux", "s390x"))
    assert "linux/s390x" in str(err.value)
    assert "linux/amd64, linux/arm64/v8" in str(err.value)


def test_parse_manifest() -> None:
    doc = {"config": _desc("application/vnd.oci.image.config.v1+json"),
           "layers": [_desc("application/vnd.oci.image.layer.v1.tar+gzip")],
           "annotations": {"a": "b"}}
    man = m.parse_manifest(doc, OCI_MANIFEST)
    assert man.config.digest == D and len(man.layers) == 1 and man.annotations == {"a": "b"}


def test_artifact_config_is_not_an_image() -> None:
    doc = {"config": _desc("application/vnd.sylabs.sif.config.v1+json"), "layers": []}
    with pytest.raises(FormatError, match="not a container image"):
        m.parse_manifest(doc, OCI_MANIFEST)
    assert m.parse_manifest(doc, OCI_MANIFEST, config_types=None).layers == ()


@pytest.mark.parametrize(("doc", "message"), [
    ({}, "not a JSON object"),
    ({"config": {"mediaType": "x", "digest": D}}, "size"),
    ({"config": {"mediaType": "x", "digest": D, "size": True}}, "size"),
    ({"config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}}, "digest"),
    ({"config": {"digest": D, "size": 1}}, "mediaType"),
    ({"config": _desc(DOCKER_MANIFEST), "layers": "x"}, "not a list"),
    ({"config": _desc(DOCKER_MANIFEST), "layers": [], "annotations": ["x"]}, "annotations"),
    ({"config": _desc(DOCKER_MANIFEST, platform="x"), "layers": []}, "platform"),
    ({"config": {"mediaType": "x", "digest": D, "size": -1}}, "negative"),
])
def test_malformed_manifests(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        m.parse_manifest(doc, OCI_MANIFEST, config_types=None)


@pytest.mark.parametrize(("media_type", "kind"), [
    (OCI_INDEX, "index"), (OCI_MANIFEST, "manifest"), (DOCKER_MANIFEST, "manifest"),
    ("application/vnd.docker.distribution.manifest.list.v2+json", "index"),
])
def test_check_kind(media_type: str, kind: str) -> None:
    assert m.check_kind(media_type) == kind


@pytest.mark.parametrize(("media_type", "message"), [
    ("application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
    ("application/vnd.cncf.helm.chart.content.v1.tar+gzip", "not a container image"),
    ("", "not a container image"),
])
def test_check_kind_refuses(media_type: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        m.check_kind(media_type)


def test_media_type_of() -> None:
    assert m.media_type_of({"mediaType": "a"}, "b") == "a"
    assert m.media_type_of({}, "b; charset=x") == "b"
    assert m.media_type_of({"manifests": []}, "application/json") == OCI_INDEX
    assert m.media_type_of({"config": {}, "layers": []}, "") == OCI_MANIFEST


def test_config_platform() -> None:
    assert m.config_platform({"architecture": "arm64", "os": "linux", "variant": "v8"}) == \
        Platform("linux", "arm64", "v8")
    assert m.platform_matches(m.config_platform({"architecture": "amd64", "os": "linux"}),
                              Platform("linux", "amd64"))
    assert m.config_platform({}) == Platform("linux", "", "")
    with pytest.raises(FormatError):
        m.config_platform({"os": "linux", "architecture": 7})
