"""Fuzzing, bounded for CI: property tests over the parsers of everything a
registry, an OCI layout or a definition file hands over, the registry
client against a server that answers anything, and a fixed corpus of
mutated SIFs through ``inspect`` and ``exec``.

Every outcome must be a value or a :class:`capsa.errors.CapsaError` (the
CLI: one FATAL line, or the payload's own exit status), never another
exception, a traceback or a hang.  Examples are derandomised: the same
cases run on every CI run.  The cases are counted in the trust figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capsa.errors import CapsaError
from support.cli import Capsa
from support.registry import HostileRegistry
from trust import figures
from trust.conftest import marked_sif, scratch_dir

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPES = [OCI_INDEX, OCI_MANIFEST, OCI_CONFIG, DOCKER_LIST, LAYER,
               "application/vnd.docker.distribution.manifest.v1+json", "", "text/plain"]
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Tally:
    """Cases run and cases that ended in something other than a value or a
    CapsaError; recorded in the figures whatever happens."""

    cases: int = 0
    bad: int = 0

    @contextlib.contextmanager
    def case(self) -> Iterator[None]:
        self.cases += 1
        try:
            yield
        except CapsaError:
            return
        except BaseException:
            self.bad += 1
            raise


@contextlib.contextmanager
def tallied() -> Iterator[Tally]:
    tally = Tally()
    try:
        yield tally
    finally:
        figures.add("fuzz", tally.cases, tally.bad)


# -- documents -----------------------------------------------------------------

_size = st.one_of(st.integers(-(1 << 70), 1 << 70), st.floats(), st.text(max_size=4),
                  st.none(), st.booleans())
_digest = st.one_of(st.just("sha256:" + "a" * 64), st.text(max_size=20),
                    st.from_regex(r"sha(256|512):[0-9a-f]{0,70}", fullmatch=True))
_platform = st.fixed_dictionaries(
    {"architecture": st.sampled_from(["amd64", "arm64", "", "s390x"]),
     "os": st.sampled_from(["linux", "windows", "unknown"])},
    optional={"variant": st.sampled_from(["v7", "v8", ""])})
_junk = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
_descriptor = st.one_of(
    st.fixed_dictionaries({"mediaType": st.sampled_from(MEDIA_TYPES), "digest": _digest,
                           "size": _size},
                          optional={"platform": st.one_of(_platform, _junk),
                                    "annotations": st.one_of(
                                        st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                        max_size=2), _junk)}),
    _junk)
_manifest = st.fixed_dictionaries(
    {"schemaVersion": st.one_of(st.just(2), _size), "mediaType": st.sampled_from(MEDIA_TYPES),
     "config": _descriptor, "layers": st.one_of(st.lists(_descriptor, max_size=3), _junk)})
_index = st.fixed_dictionaries(
    {"schemaVersion": st.just(2), "mediaType": st.sampled_from([OCI_INDEX, DOCKER_LIST]),
     "manifests": st.one_of(st.lists(_descriptor, max_size=4), _junk)})
_config = st.fixed_dictionaries(
    {"architecture": st.one_of(st.sampled_from(["amd64", "arm64"]), _junk),
     "os": st.one_of(st.just("linux"), _junk),
     "config": st.one_of(st.fixed_dictionaries(
         {"Env": st.one_of(st.lists(st.text(max_size=8), max_size=3), _junk),
          "Cmd": st.one_of(st.lists(st.text(max_size=8), max_size=3), _junk),
          "Labels": st.one_of(st.dictionaries(st.text(max_size=4), st.text(max_size=4),
                                              max_size=2), _junk)}), _junk)})
# hostile tokens spliced into the JSON text: what json.dumps never writes
_splice = st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "9" * 40, "[" * 3000,
                           '{"a":' * 2000, "\\ud800", "", "null"])


def _text(doc: Any, at: int, token: str) -> bytes:
    """*doc* as JSON, with *token* in place of one value (or nowhere)."""
    text = json.dumps(doc)
    colons = [i for i, c in enumerate(text) if c == ":"]
    if token and colons:
        cut = colons[at % len(colons)] + 1
        end = cut + 1
        while end < len(text) and text[end] not in ",}]":
            end += 1
        text = text[:cut] + token + text[end:]
    return text.encode()


def _parse_everything(data: bytes, declared: str) -> None:
    """What capsa does with a manifest, index or config it was handed."""
    from capsa import oci
    from capsa.digest import Platform
    from capsa.jsondoc import load_object
    from capsa.registry import manifest

    doc = load_object(data, "document")
    media = manifest.media_type_of(doc, declared)
    with contextlib.suppress(CapsaError):
        kind = manifest.check_kind(media)
        if kind == "index":
            index = manifest.parse_index(doc, media)
            index.select(Platform("linux", "amd64", ""))
        else:
            manifest.parse_manifest(doc, media)
    with contextlib.suppress(CapsaError):
        manifest.config_platform(doc)
    with contextlib.suppress(CapsaError):
        if not oci.is_index(doc, declared):
            oci.image_manifest(doc, declared)


def test_manifest_index_and_config_parsers() -> None:
    with tallied() as tally:
        @FUZZ
        @given(st.one_of(_manifest, _index, _config, _junk), st.integers(0, 50), _splice,
               st.sampled_from(MEDIA_TYPES))
        def check(doc: Any, at: int, token: str, declared: str) -> None:
            with tally.case():
                _parse_everything(_text(doc, at, token), declared)

        check()


# -- the registry client against a server that answers anything ----------------

def test_registry_client_against_a_hostile_server(hostile_registry: HostileRegistry) -> None:
    from capsa.digest import Platform
    from capsa.reference import parse_reference
    from capsa.registry import RegistryOptions, open_client

    numbers = iter(range(1 << 30))
    with tallied() as tally, open_client(RegistryOptions(no_https=True)) as client:
        @settings(FUZZ, max_examples=80)
        @given(st.one_of(_manifest, _index, _junk), st.integers(0, 50), _splice,
               st.sampled_from(MEDIA_TYPES), st.binary(max_size=64))
        def check(doc: Any, at: int, token: str, media: str, blob: bytes) -> None:
            name = f"fuzz/n{next(numbers)}"
            data = _text(doc, at, token)
            hostile_registry.push_raw(name, data, [blob], media_type=media)
            with tally.case():
                resolved = client.resolve(parse_reference(hostile_registry.ref(name)),
                                          Platform("linux", "amd64", ""))
                client.fetch_blob(resolved.reference, resolved.config, io.BytesIO())

        check()


# -- the definition-file parser ---------------------------------------------------

_DEF_LINES = st.sampled_from([
    "Bootstrap: localimage", "From: /x.sif", "%files", "    a /", "    a b c", "%post",
    "%files from stage", "Stage: stage", "%arguments", "X={{ X }}", "{{ X }}", "%labels",
    "    k v", "%environment", "%runscript -c /bin/bash", "%apprun a", "%appfiles a",
    "%help", "Fingerprints: 00", "%test", "\t", "%" * 3, "{{" * 50, "}}", "\\"])


def test_definition_file_parser() -> None:
    from capsa.deffile.parser import check_buildable, parse

    with tallied() as tally:
        @FUZZ
        @given(st.lists(st.one_of(_DEF_LINES, st.text(max_size=30)), max_size=25),
               st.dictionaries(st.sampled_from(["X", "Y"]), st.text(max_size=40), max_size=2))
        def check(lines: list[str], args: dict[str, str]) -> None:
            with tally.case():
                definition = parse("\n".join(lines), args)
                check_buildable(definition)

        check()


# -- mutated SIFs through the CLI --------------------------------------------------

DESCRIPTORS = 4096  # where a SIF's descriptor table starts
SLOT = 585
MUTANTS = 24
INTERESTING = [0, 1, -1, 2, 4096, 32176, 0x4004, 1 << 31, (1 << 63) - 1, -(1 << 63)]


def _mutants(good: bytes, partition: int, count: int) -> list[bytes]:
    """*count* mutants of *good*: header, descriptor table and squashfs
    superblock fields set to edge values, and random bytes in the data."""
    rng = random.Random(13)
    regions = [(0, 120), (DESCRIPTORS, DESCRIPTORS + 4 * SLOT), (partition, partition + 96),
               (partition, len(good) - 8)]
    out = []
    for number in range(count):
        data = bytearray(good)
        start, end = regions[number % len(regions)]
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(start, end)
            fmt = rng.choice(["<q", "<i", "<I", "<H", "<B"])
            value = rng.choice(INTERESTING) if rng.random() < 0.6 else rng.getrandbits(64)
            width = struct.calcsize(fmt)
            data[at:at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        out.append(bytes(data))
    return out


@pytest.fixture(scope="module")
def mutated_sifs() -> Iterator[list[Path]]:
    import shutil

    from capsa.sif import SifImage

    work = scratch_dir("trust-mutants-")
    good = marked_sif(work, "good")
    with SifImage.open(good) as image:
        partition = image.primary_partition().offset
    paths = []
    for number, data in enumerate(_mutants(good.read_bytes(), partition, MUTANTS)):
        path = work / f"mutant-{number:02d}.sif"
        path.write_bytes(data)
        path.chmod(0o644)
        paths.append(path)
    yield paths
    shutil.rmtree(work, ignore_errors=True)


def _clean_outcome(run: Callable[[], Any]) -> bool:
    """One FATAL line (255), or the payload's own status; no traceback, no hang."""
    try:
        result = run()
    except subprocess.TimeoutExpired:
        return False
    if "Traceback" in result.stderr or "internal error" in result.stderr:
        return False
    if result.returncode == 255:
        return bool(result.stderr.count("FATAL:   ") == 1
                    and result.stderr.rstrip("\n").splitlines()[-1].startswith("FATAL:   "))
    return bool(result.returncode >= 0)


@pytest.mark.needs_userns
def test_mutated_sifs_through_inspect_and_exec(any_capsa: Capsa, mutated_sifs: list[Path],
                                               scratch: Path) -> None:
    bad = []
    env = {"TMPDIR": str(scratch)}
    for path in mutated_sifs:
        for argv in (["inspect", str(path)], ["exec", str(path), "true"]):
            if not _clean_outcome(lambda argv=argv: any_capsa(*argv, env=env, cwd=scratch,
                                                              timeout=60)):
                bad.append(" ".join(argv))
    figures.add("fuzz", 2 * len(mutated_sifs), len(bad))
    assert bad == []
    assert sorted(p.name for p in scratch.iterdir()) == []  # nothing left behind
