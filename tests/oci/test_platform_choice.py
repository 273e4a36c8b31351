"""``docker://`` and ``oci:`` pick the same manifest from the same index.

Both sources hand their index to one selector, which follows
containers/image's rules (what Apptainer's ``--arch``/``--platform`` users
expect): the exact variant first, then older variants the CPU also runs
(``arm/v7`` runs ``v6`` and ``v5``), then an entry with no variant; with no
variant asked for, an entry without one comes first.  Each case is checked
through a real OCI layout directory and through the registry client on the
same index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from capsa.digest import OCI_INDEX, Platform
from capsa.errors import FormatError, NotFoundError
from capsa.oci.layout import OCILayout
from capsa.registry import RegistryClient
from capsa.registry.credentials import CredentialStore
from support.memory_registry import MemoryRegistry
from support.tinyoci import Image, make_image, make_index, write_layout

HOST = "registry.test"

# (the index's platforms in order, what is asked for, the position expected; None: no match)
CASES = [
    ([("arm", "v7")], Platform("linux", "arm", "v6"), None),
    ([("arm", "v6"), ("arm64", "v8")], Platform("linux", "arm", "v7"), 0),
    ([("arm", "v6"), ("arm", "v7")], Platform("linux", "arm"), 1),
    ([("amd64", "v3"), ("amd64", "")], Platform("linux", "amd64"), 1),
    ([("amd64", "v3"), ("amd64", "")], Platform("linux", "amd64", "v2"), 1),
    ([("arm64", "v8"), ("arm64", "")], Platform("linux", "arm64"), 1),
    ([("arm64", "")], Platform("linux", "arm64", "v8"), 0),
    ([("arm", "v5"), ("arm", "v7"), ("arm", "v6")], Platform("linux", "arm", "v7"), 1),
    ([("arm", ""), ("arm", "v6")], Platform("linux", "arm", "v7"), 1),
    ([("amd64", ""), ("arm64", "v8")], Platform("linux", "arm64", "v8"), 1),
    ([("amd64", "")], Platform("linux", "s390x"), None),
]


def _images(platforms: list[tuple[str, str]]) -> list[Image]:
    return [make_image({"which": f"{i}".encode()}, arch, variant)
            for i, (arch, variant) in enumerate(platforms)]


def _from_layout(tmp_path: Path, images: list[Image], want: Platform,
                 index: bytes | None = None) -> str:
    index = index or make_index(images)
    layout = write_layout(tmp_path / "layout", "t", index, OCI_INDEX, images)
    return OCILayout(layout).image("t", want).manifest_digest or ""


def _from_registry(images: list[Image], want: Platform, index: bytes | None = None) -> str:
    reg = MemoryRegistry(HOST)
    for image in images:
        reg.add_image("lib/img", image.digest, image.manifest, image.blobs.values())
    reg.add_manifest("lib/img", "t", index or make_index(images))
    client = RegistryClient(reg, CredentialStore())  # type: ignore[arg-type]
    return client.resolve(f"docker://{HOST}/lib/img:t", want).manifest.digest


@pytest.mark.parametrize(("platforms", "want", "expected"), CASES,
                         ids=[f"{c[1]}-from-{'+'.join('/'.join(filter(None, p)) for p in c[0])}"
                              for c in CASES])
@pytest.mark.parametrize("source", ["oci", "docker"])
def test_both_sources_pick_the_same_manifest(
        tmp_path: Path, source: str, platforms: list[tuple[str, str]], want: Platform,
        expected: int | None) -> None:
    images = _images(platforms)

    def pick() -> str:
        if source == "oci":
            return _from_layout(tmp_path, images, want)
        return _from_registry(images, want)

    if expected is None:
        with pytest.raises(NotFoundError, match=str(want)):
            pick()
    else:
        assert pick() == images[expected].digest


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda entry: entry.__setitem__(key, value)


# One descriptor parser: an index entry either source refuses, both refuse.
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("platform-not-an-object", _set("platform", "linux/amd64"), "platform"),
    ("no-media-type", lambda entry: entry.pop("mediaType"), "mediaType"),
    ("architecture-not-a-string",
     lambda entry: entry["platform"].__setitem__("architecture", 7), "architecture"),
    ("negative-size", _set("size", -1), "size"),
    ("size-not-an-integer", _set("size", "10"), "size"),
    ("annotations-not-an-object", _set("annotations", ["x"]), "annotations"),
    ("bad-digest", _set("digest", "sha256:zz"), "digest"),
]


@pytest.mark.parametrize(("name", "damage", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
@pytest.mark.parametrize("source", ["oci", "docker"])
def test_both_sources_refuse_the_same_descriptors(
        tmp_path: Path, source: str, name: str, damage: Callable[[dict[str, Any]], None],
        message: str) -> None:
    images = _images([("amd64", "")])
    doc = json.loads(make_index(images))
    damage(doc["manifests"][0])
    index = json.dumps(doc).encode()
    want = Platform("linux", "amd64")
    with pytest.raises(FormatError, match=message):
        if source == "oci":
            _from_layout(tmp_path, images, want, index)
        else:
            _from_registry(images, want, index)
