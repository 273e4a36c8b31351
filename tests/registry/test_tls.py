"""HTTPS, the default: a registry with a certificate from a test CA."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from capsa.digest import Platform
from capsa.errors import RegistryError
from capsa.registry import RegistryOptions, open_client
from capsa.registry.transport import HTTPTransport
from support.cli import Capsa
from support.registry import Registry
from support.tinyoci import make_layout

AMD64 = Platform("linux", "amd64")


@pytest.fixture(scope="module")
def tls_image(tls_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    layout = tmp_path_factory.mktemp("tls")
    make_layout(layout, "v1", {"secure": b"yes"})
    tls_registry.push_oci_layout(layout, "tls/img:v1")
    return tls_registry.ref("tls/img:v1")


def test_https_with_trusted_ca(tls_registry: Registry, tls_image: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenSSL reads SSL_CERT_FILE when the context is made: the way users
    # (and sites) point capsa at their CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    with open_client(RegistryOptions()) as client:
        image = client.resolve(tls_image, AMD64)
        out = io.BytesIO()
        client.fetch_blob(image.reference, image.layers[0], out)
    assert out.getvalue()


def test_untrusted_certificate_is_refused(tls_image: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with open_client(RegistryOptions()) as client, \
            pytest.raises(RegistryError, match=r"TLS handshake .* failed"):
        client.resolve(tls_image, AMD64)


def test_verify_tls_off(tls_image: str) -> None:
    transport = HTTPTransport(verify_tls=False)
    with open_client(RegistryOptions(), transport=transport) as client:
        assert client.resolve(tls_image, AMD64).layers


def test_plain_http_to_a_tls_registry(tls_image: str) -> None:
    with open_client(RegistryOptions(no_https=True)) as client, \
            pytest.raises(RegistryError):
        client.resolve(tls_image, AMD64)


def test_cli_login_over_https(any_capsa: Capsa, tls_registry: Registry, scratch: Path) -> None:
    """A loopback registry: HTTPS is tried first (and works with the CA)."""
    authfile = scratch / "auth.json"
    res = any_capsa("registry", "login", "-u", "someone", "-p", "pw", "--authfile",
                    str(authfile), f"docker://{tls_registry.host}",
                    env={"SSL_CERT_FILE": str(tls_registry.ca_file)})
    assert res.returncode == 0, res
    assert tls_registry.host in json.loads(authfile.read_text())["auths"]
