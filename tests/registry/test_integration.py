"""The client against real registries (Debian's docker-registry, plain,
htpasswd and token auth) and a hostile server, over real HTTP."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsa.digest import OCI_MANIFEST, Descriptor, Platform
from capsa.errors import AuthError, DigestMismatchError, FormatError, NotFoundError, RegistryError
from capsa.reference import parse_reference
from capsa.registry import Credentials, RegistryClient, RegistryOptions, open_client
from capsa.registry.transport import HTTPTransport
from support.registry import HostileRegistry, Registry, free_port
from support.tinyoci import Image, make_image, make_layout, make_multiarch_layout, sha256

AMD64 = Platform("linux", "amd64")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Image]:
    path = tmp_path_factory.mktemp("layout")
    image = make_layout(path, "v1", {"bin/hello": b"#!/bin/sh\necho hi\n"})
    return path, image


@pytest.fixture(scope="module")
def multiarch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Image]]:
    path = tmp_path_factory.mktemp("multi")
    images = make_multiarch_layout(path, "v1", [("amd64", ""), ("arm64", "v8"),
                                                ("ppc64le", "")])
    return path, images


def _client(registry: Registry | HostileRegistry, creds: bool = True,
            **kwargs: object) -> RegistryClient:
    credentials = Credentials(registry.username, registry.password or "") \
        if creds and registry.username else None
    return open_client(RegistryOptions(no_https=True, credentials=credentials,
                                       **kwargs))  # type: ignore[arg-type]


def _pull(client: RegistryClient, ref: str, platform: Platform = AMD64) -> bytes:
    image = client.resolve(ref, platform)
    out = io.BytesIO()
    for layer in image.layers:
        client.fetch_blob(image.reference, layer, out)
    return out.getvalue()


@pytest.fixture
def plain(plain_registry: Registry, layout: tuple[Path, Image]) -> Iterator[Registry]:
    plain_registry.push_oci_layout(layout[0], "it/hello:v1")
    yield plain_registry


def test_plain_registry(plain: Registry, layout: tuple[Path, Image]) -> None:
    with _client(plain) as client:
        assert _pull(client, plain.ref("it/hello:v1")) == layout[1].layers[0]
        image = client.resolve(plain.ref("it/hello:v1"))
        assert image.digest == layout[1].digest
        pinned = client.resolve(plain.ref(f"it/hello@{image.digest}"))
        assert pinned.manifest_bytes == layout[1].manifest


def test_multiarch_index(plain_registry: Registry,
                         multiarch: tuple[Path, list[Image]]) -> None:
    plain_registry.push_oci_layout(multiarch[0], "it/multi:v1")
    with _client(plain_registry) as client:
        got = client.resolve(plain_registry.ref("it/multi:v1"), Platform("linux", "arm64"))
        assert got.digest == multiarch[1][1].digest
        with pytest.raises(NotFoundError) as err:
            client.resolve(plain_registry.ref("it/multi:v1"), Platform("linux", "s390x"))
    assert "linux/amd64, linux/arm64/v8, linux/ppc64le" in str(err.value)


def test_not_found(plain: Registry) -> None:
    with _client(plain) as client:
        with pytest.raises(NotFoundError, match="not found"):
            client.resolve(plain.ref("it/hello:nope"))
        with pytest.raises(NotFoundError, match="not found"):
            client.resolve(plain.ref("it/nobody:v1"))


def test_connection_refused() -> None:
    with open_client(RegistryOptions(no_https=True)) as client, \
            pytest.raises(RegistryError, match="connection refused"):
        client.resolve(f"127.0.0.1:{free_port()}/x")


def test_unknown_host() -> None:
    with open_client(RegistryOptions()) as client, \
            pytest.raises(RegistryError, match=r"unknown host 'no-such-registry\.invalid'"):
        client.resolve("no-such-registry.invalid/x")


def test_https_to_a_plain_registry_says_no_https(plain: Registry) -> None:
    with open_client(RegistryOptions()) as client, \
            pytest.raises(RegistryError, match="--no-https"):
        client.resolve(plain.ref("it/hello:v1"))


def test_registries_conf_mirror_for_docker_hub(plain: Registry, tmp_path: Path,
                                               layout: tuple[Path, Image]) -> None:
    """A site mirror of Docker Hub: ``docker://it/hello:v1`` never leaves the site."""
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "docker.io"\n'
                    f'[[registry.mirror]]\nlocation = "{plain.host}"\ninsecure = true\n')
    with open_client(RegistryOptions(registries_conf=(conf,))) as client:
        got = client.resolve("it/hello:v1", AMD64)
        assert got.reference.registry == plain.host
        assert _pull(client, "it/hello:v1") == layout[1].layers[0]


def test_registries_conf_search_and_insecure(plain: Registry, tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(f'unqualified-search-registries = ["{plain.host}"]\n'
                    f'[[registry]]\nlocation = "{plain.host}"\ninsecure = true\n')
    with open_client(RegistryOptions(registries_conf=(conf,))) as client:
        assert client.resolve("it/hello:v1", AMD64).reference.registry == plain.host


# -- authentication


def test_basic_auth(auth_registry: Registry, layout: tuple[Path, Image]) -> None:
    auth_registry.push_oci_layout(layout[0], "it/hello:v1")
    with _client(auth_registry) as client:
        assert _pull(client, auth_registry.ref("it/hello:v1")) == layout[1].layers[0]
    with _client(auth_registry, creds=False) as client, pytest.raises(AuthError) as err:
        client.resolve(auth_registry.ref("it/hello:v1"), AMD64)
    assert f"capsa registry login docker://{auth_registry.host}" in str(err.value)
    wrong = open_client(RegistryOptions(no_https=True, credentials=Credentials("capsa", "x")))
    with wrong, pytest.raises(AuthError, match="refused the credentials"):
        wrong.resolve(auth_registry.ref("it/hello:v1"), AMD64)


def test_token_auth(token_registry: Registry, layout: tuple[Path, Image]) -> None:
    token_registry.push_oci_layout(layout[0], "public/hello:v1")
    token_registry.push_oci_layout(layout[0], "private/hello:v1")
    expected = layout[1].layers[0]
    with _client(token_registry, creds=False) as anonymous:
        assert _pull(anonymous, token_registry.ref("public/hello:v1")) == expected
        with pytest.raises(AuthError, match="registry login"):
            anonymous.resolve(token_registry.ref("private/hello:v1"), AMD64)
    with _client(token_registry) as client:
        assert _pull(client, token_registry.ref("private/hello:v1")) == expected
    bad = open_client(RegistryOptions(no_https=True, credentials=Credentials("capsa", "x")))
    with bad, pytest.raises(AuthError, match="refused"):
        bad.resolve(token_registry.ref("private/hello:v1"), AMD64)


def test_check_login(auth_registry: Registry, token_registry: Registry) -> None:
    for registry in (auth_registry, token_registry):
        with _client(registry) as client:
            client.check_login(registry.host, Credentials("capsa", registry.password or ""))
            with pytest.raises(AuthError):
                client.check_login(registry.host, Credentials("capsa", "wrong"))


@pytest.mark.parametrize("fixture", ["plain_registry", "token_registry"])
def test_push_then_pull(fixture: str, request: pytest.FixtureRequest) -> None:
    registry: Registry = request.getfixturevalue(fixture)
    image = make_image({"pushed": b"by capsa"})
    ref = parse_reference(registry.ref("pushed/img:v1"))
    with _client(registry) as client:
        for blob in [image.config, *image.layers]:
            client.push_blob(ref, Descriptor("x", sha256(blob), len(blob)), io.BytesIO(blob))
        client.push_manifest(ref, OCI_MANIFEST, image.manifest)
    with _client(registry) as client:
        assert _pull(client, str(ref)) == image.layers[0]


# -- hostile content


def _hostile_image(hostile: HostileRegistry, name: str, layer: bytes,
                   announced: bytes) -> None:
    """A manifest announcing *announced* whose blob is really *layer*."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(announced), "size": len(announced)}],
    }).encode()
    hostile.push_raw(name, manifest, {sha256(config): config, sha256(announced): layer})


@pytest.mark.parametrize(("layer", "announced", "message"), [
    (b"evil" * 1000, b"good" * 1000, "digest mismatch"),
    (b"short", b"longer!", "bytes"),
    (b"longer!", b"short", "bytes"),
])
def test_hostile_blobs_are_refused(hostile_registry: HostileRegistry, layer: bytes,
                                   announced: bytes, message: str) -> None:
    name = f"bad/{len(layer)}-{len(announced)}"
    _hostile_image(hostile_registry, name, layer, announced)
    with _client(hostile_registry) as client:
        image = client.resolve(hostile_registry.ref(name), AMD64)
        out = io.BytesIO()
        with pytest.raises(DigestMismatchError, match=message):
            client.fetch_blob(image.reference, image.layers[0], out)
        assert out.getvalue() == b""


@pytest.mark.parametrize("media_type", ["application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                        "text/html"])
def test_hostile_manifest_types(hostile_registry: HostileRegistry, media_type: str) -> None:
    hostile_registry.push_raw("bad/type", b'{"schemaVersion": 2}', media_type=media_type)
    with _client(hostile_registry) as client, pytest.raises(FormatError,
                                                             match="not a container image"):
        client.resolve(hostile_registry.ref("bad/type"), AMD64)


def test_huge_manifest_is_refused(hostile_registry: HostileRegistry) -> None:
    hostile_registry.push_raw("bad/huge", b" " * (5 << 20), media_type=OCI_MANIFEST)
    with _client(hostile_registry) as client, pytest.raises(FormatError, match="larger"):
        client.resolve(hostile_registry.ref("bad/huge"), AMD64)


def test_connections_are_reused(hostile_registry: HostileRegistry) -> None:
    blobs = [bytes([i]) * 5000 for i in range(6)]
    for blob in blobs:
        hostile_registry.put_blob("reuse/x", sha256(blob), blob)
    before = len(hostile_registry.peers)
    ref = parse_reference(hostile_registry.ref("reuse/x"))
    with _client(hostile_registry) as client:
        for blob in blobs:
            client.fetch_blob(ref, Descriptor("x", sha256(blob), len(blob)), io.BytesIO())
    assert len(set(hostile_registry.peers[before:])) == 1


def test_transport_refuses_odd_schemes() -> None:
    from capsa.registry.transport import Request

    with pytest.raises(RegistryError, match="unsupported URL scheme"):
        HTTPTransport().send(Request("GET", "ftp://x/"))


def test_server_that_closes_mid_body() -> None:
    """A server dying half-way through a blob is an error, not a short blob."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a few bytes")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    desc = Descriptor("x", sha256(b"y" * 100), 100)
    with open_client(RegistryOptions(no_https=True)) as client, \
            pytest.raises((RegistryError, DigestMismatchError)):
        client.fetch_blob(parse_reference(f"127.0.0.1:{port}/x"), desc, io.BytesIO())
    thread.join(5)
    server.close()


def test_stale_keepalive_connection_is_retried() -> None:
    """A server that closes an idle keep-alive connection: the next request
    goes out again on a fresh one."""
    import threading

    from capsa.registry.transport import Request

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    port = server.getsockname()[1]

    def serve() -> None:
        for body in (b"first", b"second"):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()  # despite HTTP/1.1 keep-alive

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = HTTPTransport(timeout=10)
    try:
        for expected in (b"first", b"second"):
            resp = transport.send(Request("GET", f"http://127.0.0.1:{port}/x"))
            assert resp.read() == expected
            resp.close()
    finally:
        transport.close()
        thread.join(5)
        server.close()


def test_upload_of_a_lying_stream_is_stopped(plain_registry: Registry) -> None:
    ref = parse_reference(plain_registry.ref("lying/img:v1"))
    desc = Descriptor("x", sha256(b"a" * 4096), 4096)
    with _client(plain_registry) as client:
        with pytest.raises(DigestMismatchError):
            client.push_blob(ref, desc, io.BytesIO(b"b" * 4096))
        assert not client.blob_exists(ref, desc.digest)
        client.push_blob(ref, desc, io.BytesIO(b"a" * 4096))
        assert client.blob_exists(ref, desc.digest)


def test_parallel_downloads_over_one_pool(plain_registry: Registry, tmp_path: Path) -> None:
    """Eight threads, one client, one connection pool, every blob verified."""
    from concurrent.futures import ThreadPoolExecutor

    images = [make_image({f"f{i}": bytes([i]) * 200_000}) for i in range(12)]
    for i, image in enumerate(images):
        plain_registry.push_raw("parallel/img", image.manifest, image.blobs, f"t{i}")
    ref = parse_reference(plain_registry.ref("parallel/img:t0"))
    descs = [Descriptor("l", sha256(i.layers[0]), len(i.layers[0])) for i in images]
    with _client(plain_registry) as client:
        def fetch(desc: Descriptor) -> bytes:
            out = io.BytesIO()
            client.fetch_blob(ref, desc, out)
            return out.getvalue()

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(fetch, descs * 2)) == [i.layers[0] for i in images] * 2
