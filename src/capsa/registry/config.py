"""containers-registries.conf(5), version 2 (and the v1 search/insecure
tables): which registries to search for unqualified names, which are plain
HTTP, which are blocked, and which mirrors to try first.

Files, as containers/image reads them: ``$CONTAINERS_REGISTRIES_CONF`` if
set, else the user's ``~/.config/containers/registries.conf`` if it exists,
else ``/etc/containers/registries.conf``; then the drop-ins in
``registries.conf.d`` beside each (``*.conf`` in name order) override it.
The CLI works out the paths (:func:`default_paths`); this module only reads
what it is given.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from capsa import report
from capsa.errors import FormatError, UsageError
from capsa.reference import DOCKER_HUB, Reference, normalise_host, split_host

log = report.getLogger("capsa.registry")

SYSTEM_CONF = Path("/etc/containers/registries.conf")


@dataclass(frozen=True, slots=True)
class Mirror:
    location: str
    insecure: bool = False
    by_digest_only: bool = False


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One ``[[registry]]`` table."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()
    mirror_by_digest_only: bool = False

    def matches(self, name: str) -> bool:
        """Does this entry apply to ``host/repository`` *name*?"""
        if self.prefix.startswith("*."):
            host = name.split("/", 1)[0]
            return fnmatch.fnmatchcase(host, self.prefix) and host != self.prefix[2:]
        return name == self.prefix or name.startswith(self.prefix.rstrip("/") + "/") \
            or (self.prefix.endswith("/") and name.startswith(self.prefix))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A concrete place to fetch a reference from."""

    reference: Reference
    insecure: bool = False
    mirror: bool = False


@dataclass(frozen=True, slots=True)
class RegistriesConfig:
    """The merged configuration (empty: Docker Hub for everything)."""

    search: tuple[str, ...] = ()
    registries: tuple[RegistryEntry, ...] = ()
    sources: tuple[Path, ...] = field(default=())

    def entry_for(self, name: str) -> RegistryEntry | None:
        """The entry with the longest matching prefix."""
        best: RegistryEntry | None = None
        for entry in self.registries:
            if entry.matches(name) and (best is None or len(entry.prefix) > len(best.prefix)):
                best = entry
        return best

    def is_insecure(self, host: str) -> bool:
        """Is *host* (a registry or mirror location) to be spoken to over
        plain HTTP?"""
        for entry in self.registries:
            if entry.prefix.startswith("*.") and entry.matches(host):
                return entry.insecure
            if entry.location.split("/", 1)[0] == host and entry.insecure:
                return True
            if any(m.insecure and m.location.split("/", 1)[0] == host for m in entry.mirrors):
                return True
        return False

    def candidates(self, ref: Reference) -> list[Reference]:
        """The fully qualified references to try for *ref*, in order."""
        if ref.qualified or not self.search:
            return [ref]
        out = []
        for host in self.search:
            host = normalise_host(host)
            repo = ref.repository
            if host != DOCKER_HUB and repo.startswith("library/") and repo.count("/") == 1:
                repo = repo.removeprefix("library/")
            out.append(Reference(host, repo, ref.tag, ref.digest, qualified=True))
        return out

    def endpoints(self, ref: Reference) -> list[Endpoint]:
        """Where to fetch *ref* from: mirrors first, then the (rewritten)
        location.  A blocked registry is a :class:`UsageError`."""
        entry = self.entry_for(ref.name)
        if entry is None:
            return [Endpoint(ref)]
        if entry.blocked:
            raise UsageError(f"registry {ref.registry} is blocked in registries.conf")
        found = [
            Endpoint(_rewrite(ref, entry.prefix, mirror.location), mirror.insecure, True)
            for mirror in entry.mirrors
            if ref.digest or not (mirror.by_digest_only or entry.mirror_by_digest_only)
        ]
        found.append(Endpoint(_rewrite(ref, entry.prefix, entry.location), entry.insecure))
        return found


def _rewrite(ref: Reference, prefix: str, location: str) -> Reference:
    name = ref.name
    if not prefix.startswith("*.") and location:
        name = location.rstrip("/") + name[len(prefix.rstrip("/")):]
    host, repo = split_host(name)
    if host is None:
        raise FormatError(f"registries.conf: location {location!r} has no registry host")
    return ref.with_location(normalise_host(host), repo)


# --------------------------------------------------------------------------
# Reading files.


def default_paths(home: Path | None, env: Mapping[str, str]) -> list[Path]:
    """The main file and its drop-ins, as containers/image picks them."""
    override = env.get("CONTAINERS_REGISTRIES_CONF")
    if override:
        return [Path(override)]
    user = home / ".config" / "containers" / "registries.conf" if home else None
    main = user if user is not None and user.exists() else SYSTEM_CONF
    paths = [main]
    dropin_dirs = [SYSTEM_CONF.with_suffix(".conf.d")]
    if user is not None:
        dropin_dirs.append(user.with_suffix(".conf.d"))
    for directory in dropin_dirs:
        if directory.is_dir():
            paths.extend(sorted(directory.glob("*.conf")))
    return paths


def load(paths: Iterable[Path]) -> RegistriesConfig:
    """Read and merge *paths* (missing files are skipped)."""
    config = RegistriesConfig()
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise FormatError(f"cannot read {path}: {err.strerror}") from err
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise FormatError(f"{path} is not valid TOML: {err}") from err
        config = merge(config, parse(doc, path))
    return config


def merge(base: RegistriesConfig, top: RegistriesConfig) -> RegistriesConfig:
    """*top* (a later file) overrides *base*: search list wholesale,
    registries by prefix."""
    prefixes = {e.prefix for e in top.registries}
    kept = tuple(e for e in base.registries if e.prefix not in prefixes)
    return replace(
        base,
        search=top.search or base.search,
        registries=kept + top.registries,
        sources=base.sources + top.sources,
    )


def parse(doc: Mapping[str, Any], path: Path | str = "registries.conf") -> RegistriesConfig:
    """One file's contents (a TOML document) as a config."""
    search = _strings(doc.get("unqualified-search-registries", []),
                      path, "unqualified-search-registries")
    entries = [_entry(table, path) for table in _tables(doc.get("registry", []), path)]
    v1 = doc.get("registries")
    if isinstance(v1, Mapping):
        search = search or _strings(_get(v1, "search"), path, "registries.search")
        entries += [RegistryEntry(h, h, insecure=True)
                    for h in _strings(_get(v1, "insecure"), path, "registries.insecure")]
        entries += [RegistryEntry(h, h, blocked=True)
                    for h in _strings(_get(v1, "block"), path, "registries.block")]
    return RegistriesConfig(tuple(search), tuple(entries), (Path(path),))


def _get(table: Mapping[str, Any], key: str) -> Any:
    sub = table.get(key, {})
    return sub.get("registries", []) if isinstance(sub, Mapping) else []


def _tables(value: Any, path: Path | str) -> Sequence[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise FormatError(f"{path}: [[registry]] must be an array of tables")
    return value


def _strings(value: Any, path: Path | str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"{path}: {key} must be a list of strings")
    return list(value)


def _bool(table: Mapping[str, Any], key: str, path: Path | str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise FormatError(f"{path}: {key} must be true or false")
    return value


def _entry(table: Mapping[str, Any], path: Path | str) -> RegistryEntry:
    location = table.get("location", "")
    prefix = table.get("prefix", "") or location
    if not isinstance(location, str) or not isinstance(prefix, str) or not prefix:
        raise FormatError(f"{path}: a [[registry]] needs a location or a prefix")
    if not location and not prefix.startswith("*."):
        location = prefix
    mirrors = tuple(
        Mirror(_mirror_location(m, path), _bool(m, "insecure", path),
               _mirror_digest_only(m, path))
        for m in _tables(table.get("mirror", []), path)
    )
    return RegistryEntry(
        prefix=_normalise_prefix(prefix),
        location=location,
        insecure=_bool(table, "insecure", path),
        blocked=_bool(table, "blocked", path),
        mirrors=mirrors,
        mirror_by_digest_only=_bool(table, "mirror-by-digest-only", path),
    )


def _mirror_location(table: Mapping[str, Any], path: Path | str) -> str:
    location = table.get("location")
    if not isinstance(location, str) or not location:
        raise FormatError(f"{path}: a [[registry.mirror]] needs a location")
    return location


def _mirror_digest_only(table: Mapping[str, Any], path: Path | str) -> bool:
    value = table.get("pull-from-mirror", "all")
    if value not in ("all", "digest-only", "tag-only"):
        raise FormatError(f"{path}: pull-from-mirror must be all, digest-only or tag-only")
    return bool(value == "digest-only")


def _normalise_prefix(prefix: str) -> str:
    if prefix.startswith("*."):
        return prefix
    host, _, rest = prefix.partition("/")
    host = normalise_host(host)
    return f"{host}/{rest}" if rest else host
