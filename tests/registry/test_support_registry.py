"""The test registries themselves work (so failures elsewhere are capsa's)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from support.registry import HostileRegistry, Registry
from support.tinyoci import make_image, make_layout, make_multiarch_layout


def _get(url: str, token: str | None = None) -> bytes:
    headers = {"Accept": "application/vnd.oci.image.manifest.v1+json,"
                         "application/vnd.oci.image.index.v1+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
        data: bytes = resp.read()
        return data


def test_plain_registry_push_oci_layout(plain_registry: Registry, tmp_path: Path) -> None:
    image = make_layout(tmp_path / "lay", "v1", {"hello": b"world"})
    plain_registry.push_oci_layout(tmp_path / "lay", "support/hello:v1")
    got = _get(f"{plain_registry.url}/v2/support/hello/manifests/v1")
    assert json.loads(got)["layers"][0]["digest"] == json.loads(image.manifest)["layers"][0][
        "digest"]


def test_plain_registry_multiarch(plain_registry: Registry, tmp_path: Path) -> None:
    make_multiarch_layout(tmp_path / "lay", "m", [("amd64", ""), ("arm64", "v8")])
    plain_registry.push_oci_layout(tmp_path / "lay", "support/multi:m")
    index = json.loads(_get(f"{plain_registry.url}/v2/support/multi/manifests/m"))
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}


def test_plain_registry_push_raw(plain_registry: Registry) -> None:
    image = make_image({"a": b"b"})
    digest = plain_registry.push_raw("support/raw", image.manifest, image.blobs, "t")
    assert _get(f"{plain_registry.url}/v2/support/raw/manifests/{digest}") == image.manifest


@pytest.mark.parametrize("fixture", ["auth_registry", "token_registry"])
def test_auth_registries_refuse_anonymous(fixture: str, request: pytest.FixtureRequest,
                                          tmp_path: Path) -> None:
    registry: Registry = request.getfixturevalue(fixture)
    make_layout(tmp_path / "lay", "v1", {"x": b"y"})
    registry.push_oci_layout(tmp_path / "lay", "private/x:v1")
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(f"{registry.url}/v2/private/x/manifests/v1")
    assert err.value.code == 401


def test_token_registry_anonymous_pull_of_public(token_registry: Registry,
                                                 tmp_path: Path) -> None:
    image = make_layout(tmp_path / "lay", "v1", {"x": b"y"})
    token_registry.push_oci_layout(tmp_path / "lay", "public/x:v1")
    assert token_registry.token_server is not None
    token = token_registry.token_server.issue(None, "repository:public/x:pull")
    assert _get(f"{token_registry.url}/v2/public/x/manifests/v1", token) == image.manifest
    token = token_registry.token_server.issue(None, "repository:private/x:pull")
    with pytest.raises(urllib.error.HTTPError):
        _get(f"{token_registry.url}/v2/private/x/manifests/v1", token)


def test_hostile_registry_serves_anything(hostile_registry: HostileRegistry) -> None:
    bogus = "sha256:" + "0" * 64
    hostile_registry.push_raw("h/x", b'{"mediaType": "text/plain"}', {bogus: b"lies"})
    assert _get(f"{hostile_registry.url}/v2/h/x/blobs/{bogus}") == b"lies"
