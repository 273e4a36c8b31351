"""RegistryClient against the in-memory registry: resolving, auth flows,
errors, verification, pushing, mirrors and search registries."""

from __future__ import annotations

import io
import json
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from capsa.digest import OCI_MANIFEST, Descriptor, Platform
from capsa.errors import AuthError, DigestMismatchError, FormatError, NotFoundError, RegistryError
from capsa.reference import parse_reference
from capsa.registry import RegistryClient, RegistryOptions, open_client
from capsa.registry.config import parse as parse_config
from capsa.registry.credentials import Credentials, CredentialStore
from support.memory_registry import MemoryNetwork, MemoryRegistry
from support.tinyoci import Image, make_image, make_index, sha256

HOST = "registry.test"
AMD64 = Platform("linux", "amd64")


def _client(reg: MemoryRegistry | MemoryNetwork, creds: Credentials | None = None,
            **kwargs: object) -> RegistryClient:
    client = RegistryClient(reg, CredentialStore(creds), **kwargs)  # type: ignore[arg-type]
    client.retry_delay = 0
    return client


def _add(reg: MemoryRegistry, name: str = "lib/img", tag: str = "v1",
         image: Image | None = None) -> Image:
    image = image or make_image({"hello": b"world"})
    reg.add_image(name, tag, image.manifest, image.blobs.values())
    return image


def _ref(name: str = "lib/img:v1", host: str = HOST) -> str:
    return f"docker://{host}/{name}"


def test_resolve_and_fetch() -> None:
    reg = MemoryRegistry(HOST)
    image = _add(reg)
    client = _client(reg)
    got = client.resolve(_ref(), AMD64)
    assert got.digest == image.digest
    assert got.manifest.media_type == OCI_MANIFEST
    assert got.manifest_bytes == image.manifest
    assert got.index is None and got.platform is None
    assert got.config.digest == sha256(image.config)
    out = io.BytesIO()
    seen: list[int] = []
    client.fetch_blob(got.reference, got.layers[0], out, progress=seen.append)
    assert out.getvalue() == image.layers[0]
    assert sum(seen) == len(image.layers[0])
    assert client.fetch_blob_bytes(got.reference, got.config) == image.config
    assert reg.requests[0].url == f"https://{HOST}/v2/lib/img/manifests/v1"
    assert "application/vnd.oci.image.index.v1+json" in reg.requests[0].headers["Accept"]


def test_resolve_by_digest_checks_it() -> None:
    reg = MemoryRegistry(HOST)
    image = _add(reg)
    got = _client(reg).resolve(_ref(f"lib/img@{image.digest}"), AMD64)
    assert got.digest == image.digest
    other = "sha256:" + "0" * 64
    reg.manifests[("lib/img", other)] = (OCI_MANIFEST, image.manifest)
    with pytest.raises(DigestMismatchError, match="manifest digest mismatch"):
        _client(reg).resolve(_ref(f"lib/img@{other}"), AMD64)


def test_no_https_and_insecure_registries() -> None:
    reg = MemoryRegistry(HOST)
    _add(reg)
    _client(reg, no_https=True).resolve(_ref(), AMD64)
    assert reg.requests[-1].url.startswith("http://")
    conf = parse_config(tomllib.loads(f'[[registry]]\nlocation = "{HOST}"\ninsecure = true'))
    _client(reg, config=conf).resolve(_ref(), AMD64)
    assert reg.requests[-1].url.startswith("http://")


def test_multi_arch_index() -> None:
    reg = MemoryRegistry(HOST)
    images = [make_image({"a": b"1"}, "amd64"), make_image({"a": b"2"}, "arm64", "v8"),
              make_image({"a": b"3"}, "arm", "v7")]
    for image in images:
        reg.add_image("multi", image.digest, image.manifest, image.blobs.values())
    index = make_index(images)
    reg.add_manifest("multi", "latest", index)
    client = _client(reg)
    got = client.resolve(_ref("multi"), Platform("linux", "arm64"))
    assert got.digest == images[1].digest
    assert got.platform == Platform("linux", "arm64", "v8")
    assert got.index is not None and got.index.digest == sha256(index)
    assert client.resolve(_ref("multi"), Platform("linux", "arm", "v7")).digest == \
        images[2].digest
    with pytest.raises(NotFoundError) as err:
        client.resolve(_ref("multi"), Platform("linux", "ppc64le"))
    assert "linux/amd64, linux/arm64/v8, linux/arm/v7" in str(err.value)


def test_index_entry_must_match_size() -> None:
    reg = MemoryRegistry(HOST)
    image = make_image({"a": b"1"})
    index = json.loads(make_index([image]))
    index["manifests"][0]["size"] += 1
    reg.add_image("m", image.digest, image.manifest, image.blobs.values())
    reg.add_manifest("m", "latest", json.dumps(index).encode())
    with pytest.raises(DigestMismatchError):
        _client(reg).resolve(_ref("m"), AMD64)


@pytest.mark.parametrize(("manifest", "media_type", "message"), [
    (b'{"mediaType": "application/vnd.cncf.helm.config.v1+json"}', None,
     "not a container image"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                 "config": {"mediaType": "application/vnd.sylabs.sif.config.v1+json",
                            "digest": "sha256:" + "1" * 64, "size": 2}}).encode(), None,
     "not a container image"),
    (b"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
    (b"not json", OCI_MANIFEST, "not valid JSON"),
])
def test_not_an_image(manifest: bytes, media_type: str | None, message: str) -> None:
    reg = MemoryRegistry(HOST)
    reg.add_manifest("x", "latest", manifest, media_type or "")
    with pytest.raises(FormatError, match=message):
        _client(reg).resolve(_ref("x"), AMD64)


def test_oras_artifacts_when_asked() -> None:
    reg = MemoryRegistry(HOST)
    sif = b"SIF bytes"
    config = b"{}"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.sylabs.sif.config.v1+json",
                                      "digest": sha256(config), "size": 2},
                           "layers": [{"mediaType": "application/vnd.sylabs.sif.layer.v1.sif",
                                       "digest": sha256(sif), "size": len(sif)}]}).encode()
    reg.add_image("sif", "latest", manifest, [sif, config])
    got = _client(reg).resolve(_ref("sif"), AMD64, config_types=None)
    assert got.layers[0].media_type == "application/vnd.sylabs.sif.layer.v1.sif"


def test_unknown_repository_or_tag() -> None:
    reg = MemoryRegistry(HOST)
    _add(reg)
    with pytest.raises(NotFoundError, match=r"registry.test/lib/img:nope not found "
                                            r"\(MANIFEST_UNKNOWN: manifest unknown\)"):
        _client(reg).resolve(_ref("lib/img:nope"), AMD64)


def test_unknown_host() -> None:
    with pytest.raises(RegistryError, match=r"unknown host 'other\.test'"):
        _client(MemoryRegistry(HOST)).resolve(_ref(host="other.test"), AMD64)


def test_rate_limit_and_server_errors() -> None:
    reg = MemoryRegistry(HOST, faults={"/manifests/": 429})
    _add(reg)
    with pytest.raises(RegistryError, match="rate limit reached, retry after 60 s"):
        _client(reg).resolve(_ref(), AMD64)
    reg.faults = {"/manifests/": 503}
    with pytest.raises(RegistryError, match="HTTP 503"):
        _client(reg).resolve(_ref(), AMD64)


# -- authentication


def test_basic_auth() -> None:
    reg = MemoryRegistry(HOST, auth="basic", users={"u": "p"})
    image = _add(reg)
    client = _client(reg, Credentials("u", "p"))
    got = client.resolve(_ref(), AMD64)
    client.fetch_blob(got.reference, got.layers[0], io.BytesIO())
    # One challenge, then every request carries the credentials at once.
    assert [r.headers.get("Authorization") is not None for r in reg.requests] == [
        False, True, True]
    assert got.digest == image.digest


def test_basic_auth_without_credentials_says_login() -> None:
    reg = MemoryRegistry(HOST, auth="basic", users={"u": "p"})
    _add(reg)
    with pytest.raises(AuthError) as err:
        _client(reg).resolve(_ref(), AMD64)
    assert "capsa registry login docker://registry.test" in str(err.value)


def test_basic_auth_wrong_password() -> None:
    reg = MemoryRegistry(HOST, auth="basic", users={"u": "p"})
    _add(reg)
    with pytest.raises(AuthError, match="refused the credentials"):
        _client(reg, Credentials("u", "wrong")).resolve(_ref(), AMD64)


def test_bearer_token_flow() -> None:
    reg = MemoryRegistry(HOST, auth="bearer", users={"u": "p"})
    _add(reg)
    client = _client(reg, Credentials("u", "p"))
    got = client.resolve(_ref(), AMD64)
    client.fetch_blob(got.reference, got.layers[0], io.BytesIO())
    token_requests = [r for r in reg.requests if r.url.startswith("https://auth.test/")]
    assert len(token_requests) == 1  # the token is reused for the same scope
    assert "scope=repository%3Alib%2Fimg%3Apull" in token_requests[0].url
    assert token_requests[0].headers["Authorization"].startswith("Basic ")


def test_anonymous_token_flow() -> None:
    reg = MemoryRegistry(HOST, auth="bearer", anonymous_pull=True)
    _add(reg)
    _client(reg).resolve(_ref(), AMD64)
    token_request = next(r for r in reg.requests if r.url.startswith("https://auth.test/"))
    assert "Authorization" not in token_request.headers


def test_anonymous_token_not_enough() -> None:
    reg = MemoryRegistry(HOST, auth="bearer")
    _add(reg)
    with pytest.raises(AuthError, match="registry login"):
        _client(reg).resolve(_ref(), AMD64)


def test_token_server_refuses_credentials() -> None:
    reg = MemoryRegistry(HOST, auth="bearer", users={"u": "p"})
    _add(reg)
    with pytest.raises(AuthError, match="refused"):
        _client(reg, Credentials("u", "bad")).resolve(_ref(), AMD64)


def test_credentials_from_auth_file(tmp_path: Path) -> None:
    reg = MemoryRegistry(HOST, auth="basic", users={"u": "p"})
    _add(reg)
    from capsa.registry.credentials import AuthFile

    AuthFile(tmp_path / ".apptainer" / "docker-config.json").store(HOST, Credentials("u", "p"))
    with open_client(RegistryOptions(home=tmp_path), transport=reg) as client:
        client.resolve(_ref(), AMD64)
    assert reg.closed


def test_check_login() -> None:
    reg = MemoryRegistry(HOST, auth="bearer", users={"u": "p"})
    client = _client(reg)
    client.check_login(HOST, Credentials("u", "p"))
    with pytest.raises(AuthError, match="refused the credentials"):
        client.check_login(HOST, Credentials("u", "nope"))
    basic = MemoryRegistry(HOST, auth="basic", users={"u": "p"})
    _client(basic).check_login(HOST, Credentials("u", "p"))
    with pytest.raises(AuthError):
        _client(basic).check_login(HOST, Credentials("x", "p"))
    _client(MemoryRegistry(HOST)).check_login(HOST, Credentials("any", "thing"))


# -- blobs


def test_blob_digest_mismatch_keeps_nothing() -> None:
    reg = MemoryRegistry(HOST)
    image = _add(reg)
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    reg.blobs[layer] = bytes(len(reg.blobs[layer]))  # same size, other content
    client = _client(reg)
    got = client.resolve(_ref(), AMD64)
    out = io.BytesIO(b"old junk")
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        client.fetch_blob(got.reference, got.layers[0], out)
    assert out.getvalue() == b""


@pytest.mark.parametrize("delta", [-1, 1])
def test_blob_size_mismatch(delta: int) -> None:
    reg = MemoryRegistry(HOST)
    image = _add(reg)
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    data = reg.blobs[layer]
    reg.blobs[layer] = data[:-1] if delta < 0 else data + b"x"
    client = _client(reg)
    got = client.resolve(_ref(), AMD64)
    with pytest.raises(DigestMismatchError, match="bytes"):
        client.fetch_blob(got.reference, got.layers[0], io.BytesIO())


def test_missing_blob() -> None:
    reg = MemoryRegistry(HOST)
    client = _client(reg)
    ref = parse_reference(_ref())
    desc = Descriptor("x", "sha256:" + "3" * 64, 3)
    with pytest.raises(NotFoundError, match=r"blob sha256:3+ of registry\.test/lib/img not found"):
        client.fetch_blob(ref, desc, io.BytesIO())


def test_fetch_blob_bytes_limit() -> None:
    client = _client(MemoryRegistry(HOST))
    with pytest.raises(FormatError, match="more than"):
        client.fetch_blob_bytes(parse_reference(_ref()), Descriptor("x", "sha256:" + "3" * 64,
                                                                    100), limit=10)


def test_redirect_drops_credentials() -> None:
    reg = MemoryRegistry(HOST, auth="basic", users={"u": "p"}, blob_redirect=True)
    image = _add(reg)
    client = _client(reg, Credentials("u", "p"))
    got = client.resolve(_ref(), AMD64)
    out = io.BytesIO()
    client.fetch_blob(got.reference, got.layers[0], out)
    assert out.getvalue() == image.layers[0]
    cdn = [r for r in reg.requests if "cdn.test" in r.url]
    assert cdn and "Authorization" not in cdn[0].headers


def test_parallel_downloads_share_one_token() -> None:
    reg = MemoryRegistry(HOST, auth="bearer", users={"u": "p"})
    images = [make_image({f"f{i}": bytes([i]) * 1000}) for i in range(8)]
    for image in images:
        reg.add_image("lib/img", image.digest, image.manifest, image.blobs.values())
    client = _client(reg, Credentials("u", "p"))
    ref = client.resolve(_ref(f"lib/img@{images[0].digest}"), AMD64).reference
    descs = [Descriptor("l", sha256(i.layers[0]), len(i.layers[0])) for i in images]

    def fetch(desc: Descriptor) -> bytes:
        out = io.BytesIO()
        client.fetch_blob(ref, desc, out)
        return out.getvalue()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(fetch, descs)) == [i.layers[0] for i in images]


# -- pushing


def test_push_blob_and_manifest() -> None:
    reg = MemoryRegistry(HOST, auth="bearer", users={"u": "p"})
    client = _client(reg, Credentials("u", "p"))
    image = make_image({"a": b"b"})
    ref = parse_reference(_ref("pushed/img:v2"))
    for data in [image.config, *image.layers]:
        desc = Descriptor("x", sha256(data), len(data))
        client.push_blob(ref, desc, io.BytesIO(data))
    client.push_blob(ref, Descriptor("x", sha256(image.config), len(image.config)),
                     image.config)  # already there: skipped
    desc = client.push_manifest(ref, OCI_MANIFEST, image.manifest)
    assert desc.digest == image.digest
    assert _client(reg, Credentials("u", "p")).resolve(ref, AMD64).digest == image.digest
    puts = [r for r in reg.requests if r.method == "PUT" and "/blobs/uploads/" in r.url]
    assert len(puts) == 2


def test_push_blob_verifies_the_source() -> None:
    reg = MemoryRegistry(HOST)
    client = _client(reg)
    desc = Descriptor("x", sha256(b"right"), 5)
    with pytest.raises(DigestMismatchError):
        client.push_blob(parse_reference(_ref()), desc, io.BytesIO(b"wrong"))
    assert desc.digest not in reg.blobs


def test_push_anonymous_is_refused() -> None:
    reg = MemoryRegistry(HOST, auth="bearer", anonymous_pull=True)
    with pytest.raises(AuthError, match="registry login"):
        _client(reg).push_manifest(parse_reference(_ref()), OCI_MANIFEST, b"{}")


# -- mirrors and search registries


def _conf(text: str) -> object:
    return parse_config(tomllib.loads(text))


def test_mirror_is_tried_first() -> None:
    hub = MemoryRegistry("docker.io")
    mirror = MemoryRegistry("mirror.test:5000")
    image = _add(mirror, "library/alpine", "latest")
    conf = _conf('[[registry]]\nlocation = "docker.io"\n'
                 '[[registry.mirror]]\nlocation = "mirror.test:5000"\ninsecure = true\n')
    client = _client(MemoryNetwork([mirror, hub]), config=conf)
    got = client.resolve("alpine", AMD64)
    assert got.digest == image.digest
    assert str(got.reference) == "mirror.test:5000/library/alpine:latest"
    assert mirror.requests[0].url.startswith("http://mirror.test:5000/")
    assert not hub.requests


def test_mirror_missing_falls_back() -> None:
    hub = MemoryRegistry("registry-1.docker.io")
    mirror = MemoryRegistry("mirror.test")
    image = _add(hub, "library/alpine", "latest")
    conf = _conf('[[registry]]\nlocation = "docker.io"\n'
                 '[[registry.mirror]]\nlocation = "mirror.test"\n')
    got = _client(MemoryNetwork([mirror, hub]), config=conf).resolve("alpine", AMD64)
    assert got.digest == image.digest and got.reference.registry == "docker.io"
    assert hub.requests[0].url.startswith("https://registry-1.docker.io/v2/library/alpine/")


def test_search_registries() -> None:
    first = MemoryRegistry("first.test")
    second = MemoryRegistry("second.test")
    image = _add(second, "tools/x", "1")
    conf = _conf('unqualified-search-registries = ["first.test", "second.test"]')
    client = _client(MemoryNetwork([first, second]), config=conf)
    got = client.resolve("tools/x:1", AMD64)
    assert got.digest == image.digest and got.reference.registry == "second.test"
    with pytest.raises(NotFoundError, match=r"not found in the search registries "
                                            r"\(first.test, second.test\)"):
        client.resolve("tools/none", AMD64)


def test_search_reports_auth_errors_over_not_found() -> None:
    first = MemoryRegistry("first.test")
    second = MemoryRegistry("second.test", auth="basic", users={"u": "p"})
    conf = _conf('unqualified-search-registries = ["first.test", "second.test"]')
    with pytest.raises(AuthError):
        _client(MemoryNetwork([first, second]), config=conf).resolve("x", AMD64)


# -- transient failures


def test_server_errors_are_retried() -> None:
    reg = MemoryRegistry(HOST, flaky={"/manifests/": 2, "/blobs/": 2})
    image = _add(reg)
    client = _client(reg)
    got = client.resolve(_ref(), AMD64)
    assert client.fetch_blob_bytes(got.reference, got.config) == image.config
    reg.flaky = {"/manifests/": 3}
    with pytest.raises(RegistryError, match="HTTP 503"):
        client.resolve(_ref(), AMD64)


def test_broken_download_is_restarted() -> None:
    reg = MemoryRegistry(HOST)
    image = _add(reg)
    layer = sha256(image.layers[0])
    reg.break_blobs[layer] = 2
    client = _client(reg)
    got = client.resolve(_ref(), AMD64)
    out = io.BytesIO()
    seen: list[int] = []
    client.fetch_blob(got.reference, got.layers[0], out, progress=seen.append)
    assert out.getvalue() == image.layers[0]
    assert sum(seen) == len(image.layers[0]) and any(n < 0 for n in seen)
    reg.break_blobs[layer] = 3
    out = io.BytesIO()
    from capsa.registry.transport import ConnectionLost

    with pytest.raises(ConnectionLost, match="broke"):
        client.fetch_blob(got.reference, got.layers[0], out)
    assert out.getvalue() == b""


def test_writes_are_not_retried() -> None:
    reg = MemoryRegistry(HOST, flaky={"/manifests/": 1})
    with pytest.raises(RegistryError, match="HTTP 503"):
        _client(reg).push_manifest(parse_reference(_ref()), OCI_MANIFEST, b"{}")
