"""``pull``: an image from a registry, an OCI layout or an archive, to one SIF.

resolve -> converted SIF in the cache?  copy it (``Using cached SIF image``)
: fetch blobs into the cache (in parallel, verified while streaming) ->
merge the layers into one tar stream -> ``tar2sqfs`` -> SIF (deffile,
``oci-config.json``, the primary squashfs partition) -> rename into place.

The destination appears complete or not at all; a failure leaves nothing
behind but the verified blobs already in the cache.  A converted SIF in the
cache is used only if a trusted user made it from the manifest and config
the registry names now (:mod:`capsa.oci.provenance`); where the cache cannot
be used for an image, it is converted privately.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from capsa import report, tempdirs
from capsa.content import CacheBlocked, ContentCache, Trust, copy_atomic, sif_cache_key
from capsa.digest import Platform
from capsa.errors import AlreadyExistsError, FormatError, UsageError
from capsa.oci import ImageContent
from capsa.oci.options import PullOptions as PullOptions  # re-exported: the pull API
from capsa.registry import host_platform
from capsa.rootfs.layers import MergeReport, RedirectNeeded, merge_layers
from capsa.rootfs.singularity_d import base_entries, metadata_entries
from capsa.scratch import Place, cache_place, guard, tmpdir_place
from capsa.site import DEFAULT_SETTINGS, SiteSettings
from capsa.squashfs import from_tar_stream

log = report.getLogger("capsa.pulling")

LOCAL_SCHEMES = ("oci", "oci-archive", "docker-archive")
REGISTRY_SCHEMES = ("docker",)
ALL_SCHEMES = (*REGISTRY_SCHEMES, *LOCAL_SCHEMES, "oras")


class CachedSif(NamedTuple):
    """A converted image to run or copy: read it through *fd* (open, checked;
    the caller closes it), *path* only names it."""

    path: Path
    fd: int
    manifest_digest: str = ""   # what the registry resolved the reference to


@dataclass(frozen=True, slots=True)
class PullResult:
    dest: Path
    cached: bool
    manifest_digest: str | None
    report: MergeReport | None = None


def split_uri(uri: str) -> tuple[str, str]:
    """(scheme, rest): ``docker://alpine`` -> (``docker``, ``alpine``)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in ALL_SCHEMES:
        raise UsageError(f"unsupported transport type: {uri} (use one of "
                         f"{', '.join(s + ':' for s in ALL_SCHEMES)})")
    if scheme in ("docker", "oras"):
        if not rest.startswith("//"):
            raise UsageError(f"invalid {scheme} URI {uri!r}: expected {scheme}://NAME")
        rest = rest[2:]
    return scheme, rest


def pull(uri: str, dest: Path, options: PullOptions) -> PullResult:
    """Pull *uri* into the SIF file *dest* (replaced atomically if present)."""
    scheme, rest = split_uri(uri)
    tempdirs.sweep(str(options.tmpdir))  # what killed runs of ours left
    platform = options.platform or host_platform()
    if scheme == "docker":
        return _pull_registry(uri, rest, dest, platform, options)
    if scheme == "oras":
        from capsa.oci.oras import pull_oras

        pull_oras(rest, dest, options)
        return PullResult(dest, False, None)
    with _workdir(options.tmpdir) as work:
        with guard(tmpdir_place(options.tmpdir)):
            content = _local_content(scheme, rest, work, platform, uri)
        report = convert(content, dest, options, work)
    return PullResult(dest, False, content.manifest_digest, report)


def _local_content(scheme: str, rest: str, work: Path, platform: Platform,
                   uri: str) -> ImageContent:
    from capsa.oci import archive
    from capsa.oci.layout import OCILayout, split_layout_ref

    path, tag = split_docker_archive(rest) if scheme == "docker-archive" else (
        split_layout_ref(rest))
    if scheme == "oci":
        return OCILayout(path).image(tag, platform, uri)
    unpacked = work / "archive"
    unpacked.mkdir()
    if scheme == "oci-archive":
        return archive.oci_archive(path, unpacked, platform, tag, uri)
    return archive.docker_archive(path, unpacked, uri, tag)


def split_docker_archive(text: str) -> tuple[Path, str | None]:
    """``FILE[:NAME:TAG]``: the file is the first prefix that exists."""
    for index, char in enumerate(text):
        if char == ":" and Path(text[:index]).is_file():
            return Path(text[:index]), text[index + 1:] or None
    return Path(text), None


def _pull_registry(uri: str, rest: str, dest: Path, platform: Platform,
                   options: PullOptions) -> PullResult:
    from capsa.oci import registry as source

    image = source.resolve(rest, platform, options.registry)
    try:
        return _fetch_and_convert(image, uri, dest, platform, options)
    finally:
        image.client.close()


def _fetch_and_convert(image: Any, uri: str, dest: Path, platform: Platform,
                       options: PullOptions) -> PullResult:
    from capsa.oci import registry as source

    cache = options.cache
    if cache is not None:
        try:
            cached, hit, merged = _into_cache(image, uri, platform, options, cache)
        except CacheBlocked as err:
            log.warning("%s: converting without the cache", err)
        else:
            try:
                with guard(Place(str(dest.parent.absolute()))):
                    copy_atomic(cached.fd, dest)
            finally:
                os.close(cached.fd)
            return PullResult(dest, hit, image.manifest_digest, merged)
    with _workdir(options.tmpdir) as work:
        with guard(tmpdir_place(options.tmpdir)):
            content = source.fetch(image, ContentCache(work / "blobs"), options.progress, uri)
        report = convert(content, dest, options, work)
    return PullResult(dest, False, image.manifest_digest, report)


def _into_cache(image: Any, uri: str, platform: Platform, options: PullOptions,
                cache: ContentCache) -> tuple[CachedSif, bool, MergeReport | None]:
    """The converted SIF in the cache, open: (it, was it there, merge report)."""
    from capsa.oci import provenance
    from capsa.oci import registry as source

    cache.ensure()
    key = sif_cache_key(image.manifest_digest, platform.architecture, platform.variant)
    if options.epoch is not None:  # a reproducible SIF is another file
        key += f"-epoch{options.epoch}"
    cached = cache.sif_path(key)
    expected = provenance.Provenance(image.manifest_digest, image.resolved.config.digest)
    with cache.lock(f"sif-{key}"):
        cache.sweep_temporaries()
        fd = provenance.open_checked(cache, cached, expected)
        if fd is not None:
            log.info("Using cached SIF image")
            return CachedSif(cached, fd, image.manifest_digest), True, None
        with guard(cache_place(cache.root)):
            content = source.fetch(image, cache, options.progress, uri)
        with _workdir(options.tmpdir) as work:
            report = convert(content, cached, options, work)
        fd = cache.open_entry(cached)
    if fd is None:
        raise CacheBlocked(f"cache entry {cached} vanished as it was written")
    return CachedSif(cached, fd, image.manifest_digest), False, report


def open_cached_image(uri: str, options: PullOptions) -> CachedSif:
    """The SIF for a ``docker://`` URI from the cache, pulled and converted
    if needed (for ``exec``/``run``/``shell docker://...`` and ``build``,
    which use it in place), open: the caller reads it through the
    descriptor and closes it.  Where the cache cannot hold this image, it is
    converted privately (the file is gone, the descriptor stays good).
    Needs ``options.cache``."""
    from capsa.errors import UsageError
    from capsa.oci import registry as source

    scheme, rest = split_uri(uri)
    if scheme != "docker" or options.cache is None:
        raise UsageError(f"cannot run {uri} from the cache: pull it to a file first")
    tempdirs.sweep(str(options.tmpdir))  # what killed runs of ours left
    platform = options.platform or host_platform()
    image = source.resolve(rest, platform, options.registry)
    try:
        try:
            return _into_cache(image, uri, platform, options, options.cache)[0]
        except CacheBlocked as err:
            log.warning("%s: converting without the cache", err)
        with _workdir(options.tmpdir) as work:
            dest = work / "image.sif"
            with guard(tmpdir_place(options.tmpdir)):
                content = source.fetch(image, ContentCache(work / "blobs"), options.progress,
                                       uri)
            convert(content, dest, options, work)
            return CachedSif(dest, os.open(dest, os.O_RDONLY | os.O_CLOEXEC),
                             image.manifest_digest)
    finally:
        image.client.close()


@contextlib.contextmanager
def _workdir(tmpdir: Path) -> Iterator[Path]:
    """A scratch directory for one conversion, removed on every exit we see;
    what killed runs left in *tmpdir* goes first (:mod:`capsa.scratch`)."""
    try:
        tmpdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"temporary directory {tmpdir} is unusable: {err.strerror}") from err
    path, lock = tempdirs.make_dir(str(tmpdir), "capsa-pull-")
    try:
        yield Path(path)
    finally:
        tempdirs.remove_tree(path)
        os.close(lock)


def deffile_header(source: str) -> dict[str, str]:
    """The definition a pull amounts to: ``bootstrap: docker``, ``from: alpine``."""
    scheme, _, rest = source.partition(":")
    if rest.startswith("//"):
        rest = rest[2:]
    return {"bootstrap": scheme, "from": rest}


def deffile_for(source: str) -> bytes:
    return "".join(f"{k}: {v}\n" for k, v in deffile_header(source).items()).encode()


def convert(content: ImageContent, dest: Path, options: PullOptions, work: Path
            ) -> MergeReport:
    """Write the SIF for *content* at *dest* (atomically), recording what it
    was made from."""
    from capsa.oci import provenance
    from capsa.sif import DataType, FSType, NewObject, PartType, create

    if options.progress is not None:
        options.progress("convert", 0, 0)
    log.info("Converting OCI blobs to SIF format")
    run_config = dict(content.run_config)
    squashfs = work / "rootfs.sqfs"
    arch = _sif_goarch(content.platform.architecture)
    top = metadata_entries(run_config, deffile=deffile_header(content.source), arch=arch,
                           mtime=options.epoch)
    base = base_entries(mtime=options.epoch)
    top, record = provenance.record(top, deffile_header(content.source)["from"],
                                    provenance.of_content(content))

    with guard(tmpdir_place(options.tmpdir)):
        report = _pack(squashfs, content, top, base, options)
    if options.progress is not None:
        options.progress("packed", 0, 0)
    objects = [
        NewObject(DataType.DEFFILE, data=deffile_for(content.source)),
        *record,
        NewObject(DataType.GENERIC_JSON, data=json.dumps(run_config).encode(),
                  name="oci-config.json"),
        NewObject(DataType.PARTITION, path=str(squashfs), fs_type=FSType.SQUASHFS,
                  part_type=PartType.PRIMSYS, arch=arch),
    ]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with guard(_place_of(dest, options)):
        create(dest, objects, deterministic=options.epoch is not None)
    return report


def _place_of(dest: Path, options: PullOptions) -> Place:
    """Where *dest* is written: the cache (with its variable) or the user's."""
    cache = options.cache
    if cache is not None and dest.absolute().is_relative_to(cache.root.absolute()):
        return cache_place(cache.root)
    return Place(str(dest.parent.absolute()))


def _pack(squashfs: Path, content: ImageContent, top: list[Any], base: list[Any],
          options: PullOptions) -> MergeReport:
    """The merged layers as a squashfs; merged again when a lower layer turns
    out to have made a directory that upper layers write into a symlink."""
    import functools

    redirects: dict[str, tuple[str, int]] = {}
    for _attempt in range(8):
        write = functools.partial(_merge_into, content=content, top=top, base=base,
                                  redirects=redirects, progress=options.progress,
                                  clamp_mtime=options.epoch)
        try:
            report = from_tar_stream(squashfs, write, options.squashfs, epoch=options.epoch)
        except RedirectNeeded as more:
            log.debug("following directory symlinks: %s", ", ".join(more.redirects))
            redirects = more.redirects
            continue
        assert isinstance(report, MergeReport)
        return report
    raise FormatError("layers keep replacing directories by symlinks: giving up")


def _merge_into(out: Any, *, content: ImageContent, top: list[Any], base: list[Any],
                redirects: dict[str, tuple[str, int]],
                progress: Callable[[str, int, int], None] | None,
                clamp_mtime: int | None) -> MergeReport:
    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("squashfs", done, total)

    return merge_layers(out, content.layers, top=top, base=base, redirects=redirects,
                        on_progress=on_progress, clamp_mtime=clamp_mtime)


def _sif_goarch(arch: str) -> str:
    from capsa.errors import CapsaError
    from capsa.sif import host_goarch, sif_arch

    try:
        sif_arch(arch)
        return arch
    except CapsaError:
        log.warning("image architecture %r is unknown to SIF: recording this host's", arch)
        return host_goarch()


def check_destination(dest: Path, force: bool) -> None:
    if dest.exists() and not force:
        raise AlreadyExistsError(f'Image file already exists: "{dest}" - will not overwrite')
    if dest.is_dir():
        raise UsageError(f"{dest} is a directory")
    if not os.access(dest.parent if str(dest.parent) else ".", os.W_OK):
        raise UsageError(f"cannot write to {dest.parent}: permission denied")


# -- a pull, as a caller asks for it ----------------------------------------------

class PullRequest(NamedTuple):
    """What ``capsa pull`` asks for, as data (the CLI fills it from argv and
    the environment; a Python caller directly)."""

    uri: str
    dest: str | None = None           # default: Apptainer's name (<name>_<tag>.sif)
    directory: str | None = None      # --dir: where a relative *dest* goes
    force: bool = False
    disable_cache: bool = False
    tmpdir: str | None = None         # default: capsa.scratch's rule
    platform: str | None = None       # os/arch[/variant]
    arch: str | None = None           # Apptainer's --arch (arm32v7...)
    arch_variant: str = ""
    no_https: bool = False
    username: str | None = None
    password: str | None = None
    authfile: str | None = None
    mksquashfs_args: str = ""
    epoch: int | None = None          # SOURCE_DATE_EPOCH: a reproducible SIF
    config: str | None = None         # a user configuration file (cache trust it adds)


def pull_request(request: PullRequest, *, site: SiteSettings = DEFAULT_SETTINGS,
                 environ: Mapping[str, str] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> PullResult:
    """Pull as *request* says: the destination checked, the caller's cache
    (trusted as the site says), the registries' settings; *environ* is where
    the caller's files are found (:mod:`capsa.userdirs`)."""
    from capsa.registry import registry_options
    from capsa.squashfs import SquashfsOptions, options_from_mksquashfs_args
    from capsa.userdirs import scratch

    dest = destination(request)
    check_destination(dest, request.force)
    squashfs = (options_from_mksquashfs_args(request.mksquashfs_args)
                if request.mksquashfs_args else SquashfsOptions())
    options = PullOptions(
        platform=platform_for(request.platform, request.arch, request.arch_variant),
        cache=user_cache(disabled=request.disable_cache, site=site, config=request.config,
                         environ=environ),
        tmpdir=Path(scratch(environ, request.tmpdir)), squashfs=squashfs,
        registry=registry_options(no_https=request.no_https, username=request.username,
                                  password=request.password, authfile=request.authfile,
                                  environ=environ),
        progress=progress, epoch=request.epoch)
    try:
        return pull(request.uri, dest, options)
    except OSError as err:  # disk full, permissions: one clear line
        from capsa.errors import EnvironmentFailure

        where = f": {err.filename}" if err.filename else ""
        raise EnvironmentFailure(f"pull failed: {err.strerror or err}{where}") from err


def default_name(uri: str) -> str:
    """Apptainer's default file name: ``<name>_<tag>.sif`` for registries,
    the archive's or layout's base name otherwise."""
    scheme, rest = split_uri(uri)
    if scheme in ("docker", "oras"):
        from capsa.reference import parse_reference

        ref = parse_reference(f"{scheme}://{rest}")
        tag = ref.tag or (ref.digest or "latest").replace(":", ".")[:19]
        return f"{ref.short_name}_{tag}.sif"
    base = Path(rest.rstrip("/")).name.split(":")[0] or "image"
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{stem}.sif"


def destination(request: PullRequest) -> Path:
    path = Path(request.dest or default_name(request.uri))
    if request.directory and not path.is_absolute():
        path = Path(request.directory) / path
    return path


# Apptainer's --arch names for variants (``arm32v7`` is ``arm/v7``).
_APPTAINER_ARCHES = {"arm32v5": ("arm", "v5"), "arm32v6": ("arm", "v6"),
                     "arm32v7": ("arm", "v7"), "arm64v8": ("arm64", "v8")}


def platform_for(platform: str | None, arch: str | None = None,
                 variant: str = "") -> Platform | None:
    """``--platform os/arch[/variant]``, else ``--arch`` (Apptainer's names)."""
    from capsa.registry import parse_platform

    if platform:
        return parse_platform(platform)
    if arch:
        name, implied = _APPTAINER_ARCHES.get(arch, (arch, ""))
        variant = variant or implied
        return parse_platform(f"linux/{name}/{variant}" if variant else name)
    return None


TRUSTED_USERS = "cache trusted users"
TRUSTED_GROUPS = "cache trusted groups"


def user_cache(*, disabled: bool = False, site: SiteSettings = DEFAULT_SETTINGS,
               config: str | None = None,
               environ: Mapping[str, str] | None = None) -> ContentCache | None:
    """The caller's (maybe shared) cache; None when *disabled* or when it
    cannot be written or trusted (with Apptainer's warning).  Whose entries
    it uses: see :func:`cache_trust`."""
    if disabled:
        return None
    from capsa.content import default_cache_root
    from capsa.errors import EnvironmentFailure

    root = default_cache_root(environ)
    cache = ContentCache(root, cache_trust(root, site, config))
    try:
        cache.ensure()
    except EnvironmentFailure as err:
        log.warning("Cache disabled - %s", err)
        return None
    return cache


def cache_trust(root: Path, site: SiteSettings, config: str | None) -> Trust:
    """Whose entries a (shared) cache at *root* may offer: this user, root,
    the owner of the directory it lives in, and the users and groups named
    by ``cache trusted users`` / ``cache trusted groups`` in the site's
    ``capsa.conf`` and in the user's ``--config`` file (which can only add)."""
    from capsa.content import trust_for
    from capsa.site import name_list, read_config, read_site_config

    settings = [read_site_config(site)]
    if config is not None:
        settings.append(read_config(config))
    users = [n for s in settings for n in name_list(s, TRUSTED_USERS)]
    groups = [n for s in settings for n in name_list(s, TRUSTED_GROUPS)]
    return trust_for(root, users, groups)


def open_for_run(request: PullRequest, *, site: SiteSettings = DEFAULT_SETTINGS,
                 environ: Mapping[str, str] | None = None) -> CachedSif:
    """A URI to run (``exec|run|shell docker://...``), open: from the cache,
    as Apptainer does; without a usable cache (or for other schemes),
    pulled into a temporary SIF whose file is removed at once (the run
    holds it open: nothing stays behind however the run ends)."""
    from capsa.registry import registry_options
    from capsa.userdirs import scratch

    scheme, _ = split_uri(request.uri)  # unsupported schemes: UsageError before any work
    cache = user_cache(disabled=request.disable_cache, site=site, config=request.config,
                       environ=environ)
    tmpdir = Path(scratch(environ, request.tmpdir))
    options = PullOptions(cache=cache, tmpdir=tmpdir, registry=registry_options(
        no_https=request.no_https, username=request.username, password=request.password,
        authfile=request.authfile, environ=environ))
    if scheme == "docker" and cache is not None:
        return open_cached_image(request.uri, options)
    tmpdir.mkdir(parents=True, exist_ok=True)
    tempdirs.sweep(str(tmpdir))
    work, lock = tempdirs.make_dir(str(tmpdir), "capsa-pull-")
    try:
        dest = Path(work) / "image.sif"
        result = pull(request.uri, dest, options)
        return CachedSif(dest, os.open(dest, os.O_RDONLY | os.O_CLOEXEC),
                         result.manifest_digest or "")
    finally:
        tempdirs.remove_tree(work)
        os.close(lock)
