"""``capsa pull [OUT] URI``: an image from a registry or archive, to one SIF."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capsa.cli.registry_flags import add_registry_flags, env_flag, env_value, registry_options

if TYPE_CHECKING:
    from capsa.content import ContentCache, Trust
    from capsa.site import SiteSettings

HELP = "Pull an image from a URI"

_USAGE_URIS = "docker://, oci:, oci-archive:, docker-archive:, oras://"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [pull options...] [output file] <URI>"
    parser.description = f"Pull an image from a URI ({_USAGE_URIS}) into a SIF file."
    parser.add_argument("paths", nargs="+", metavar="[output file] URI")
    parser.add_argument("--name", help="specify a custom image name")
    parser.add_argument("--dir", help="download images to the specific directory")
    parser.add_argument("-F", "--force", action="store_true", default=_env_flag("FORCE"),
                        help="overwrite an image file if it exists")
    parser.add_argument("--disable-cache", action="store_true",
                        help="do not use or create cached images/blobs")
    parser.add_argument("--arch", help="architecture to pull from the registry")
    parser.add_argument("--arch-variant", default="", help="architecture variant")
    parser.add_argument("--platform", help="platform to pull (os/arch[/variant])")
    add_registry_flags(parser)
    parser.add_argument("--tmpdir", help="specify a temporary directory to use for build")
    parser.add_argument("--mksquashfs-args", default=_env("MKSQUASHFS_ARGS") or "",
                        help="additional options for squashfs creation (-comp gzip...)")
    parser.add_argument("-U", "--allow-unsigned", action="store_true",
                        help="do not require a signed container image (accepted, no effect)")
    parser.add_argument("--library", default="", help="(accepted, no effect)")


def _env(name: str) -> str | None:
    return env_value(os.environ, name)


def _env_flag(name: str) -> bool:
    return env_flag(os.environ, name)


def default_name(uri: str) -> str:
    """Apptainer's default file name: ``<name>_<tag>.sif`` for registries,
    the archive's or layout's base name otherwise."""
    from capsa.pull import split_uri

    scheme, rest = split_uri(uri)
    if scheme in ("docker", "oras"):
        from capsa.reference import parse_reference

        ref = parse_reference(f"{scheme}://{rest}")
        tag = ref.tag or (ref.digest or "latest").replace(":", ".")[:19]
        return f"{ref.short_name}_{tag}.sif"
    base = Path(rest.rstrip("/")).name.split(":")[0] or "image"
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{stem}.sif"


def destination(args: argparse.Namespace) -> tuple[Path, str]:
    from capsa.errors import UsageError

    if len(args.paths) > 2:
        raise UsageError("too many arguments: pull [output file] <URI>")
    uri = args.paths[-1]
    name: str = args.paths[0] if len(args.paths) == 2 else (
        args.name or _env("PULL_NAME") or default_name(uri))
    folder = args.dir or _env("PULLDIR") or _env("PULLFOLDER")
    path = Path(name)
    if folder and not path.is_absolute():
        path = Path(folder) / path
    return path, uri


def platform_of(args: argparse.Namespace) -> Any:
    from capsa.registry import parse_platform

    if args.platform:
        return parse_platform(args.platform)
    if args.arch:
        arch, variant = _APPTAINER_ARCHES.get(args.arch, (args.arch, ""))
        variant = args.arch_variant or variant
        return parse_platform(f"linux/{arch}/{variant}" if variant else arch)
    return None


# Apptainer's --arch names for variants (``arm32v7`` is ``arm/v7``).
_APPTAINER_ARCHES = {"arm32v5": ("arm", "v5"), "arm32v6": ("arm", "v6"),
                     "arm32v7": ("arm", "v7"), "arm64v8": ("arm64", "v8")}


def tmpdir_of(args: argparse.Namespace) -> Path:
    """--tmpdir, else the environment's (:func:`capsa.scratch.scratch_dir`)."""
    from capsa.scratch import scratch_dir

    flag = getattr(args, "tmpdir", None)  # exec has no --tmpdir flag
    return Path(scratch_dir(os.environ, flag))


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` (seconds since 1970, UTC) when set: Apptainer
    1.5's switch for reproducible images (reproducible-builds.org)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.isdigit() or not value.isascii():
        from capsa.errors import UsageError

        raise UsageError(f"could not parse SOURCE_DATE_EPOCH {value!r}: expected a number "
                         "of seconds since 1970-01-01 UTC")
    return int(value)


def run(args: argparse.Namespace) -> int:
    from capsa.cli.progress import progress_for_terminal
    from capsa.pull import PullOptions, check_destination, pull
    from capsa.squashfs import SquashfsOptions, options_from_mksquashfs_args

    epoch = source_date_epoch()
    dest, uri = destination(args)
    check_destination(dest, args.force)
    squashfs = (options_from_mksquashfs_args(args.mksquashfs_args)
                if args.mksquashfs_args else SquashfsOptions())
    cache = usable_cache(disabled=args.disable_cache, site=args.site,
                         config=args.global_options.config)
    progress = progress_for_terminal()
    options = PullOptions(platform=platform_of(args), cache=cache, tmpdir=tmpdir_of(args),
                          squashfs=squashfs, registry=registry_options(args),
                          progress=progress, epoch=epoch)
    try:
        pull(uri, dest, options)
    except OSError as err:  # disk full, permissions: one clear line
        from capsa.errors import EnvironmentFailure

        where = f": {err.filename}" if err.filename else ""
        raise EnvironmentFailure(f"pull failed: {err.strerror or err}{where}") from err
    finally:
        if progress is not None:
            progress.finish()
    return 0


def usable_cache(*, disabled: bool = False, site: SiteSettings | None = None,
                 config: str | None = None) -> ContentCache | None:
    """The shared cache; None when disabled (the flag, or APPTAINER_DISABLE_CACHE)
    or when it cannot be written or trusted (with Apptainer's warning).
    Whose entries it uses: see :func:`cache_trust`."""
    if disabled or _env_flag("DISABLE_CACHE"):
        return None
    from capsa.cli import log
    from capsa.content import ContentCache, default_cache_root
    from capsa.errors import EnvironmentFailure

    root = default_cache_root()
    cache = ContentCache(root, cache_trust(root, site, config))
    try:
        cache.ensure()
    except EnvironmentFailure as err:
        log.warning(f"Cache disabled - {err}")
        return None
    return cache


TRUSTED_USERS = "cache trusted users"
TRUSTED_GROUPS = "cache trusted groups"


def cache_trust(root: Path, site: SiteSettings | None, config: str | None) -> Trust:
    """Whose entries a (shared) cache at *root* may offer: this user, root,
    the owner of the directory it lives in, and the users and groups named
    by ``cache trusted users`` / ``cache trusted groups`` in the site's
    ``capsa.conf`` and in the user's ``--config`` file (which can only add)."""
    from capsa.content import trust_for
    from capsa.site import DEFAULT_SETTINGS, name_list, read_config, read_site_config

    settings = [read_site_config(site or DEFAULT_SETTINGS)]
    if config is not None:
        settings.append(read_config(config))
    users = [n for s in settings for n in name_list(s, TRUSTED_USERS)]
    groups = [n for s in settings for n in name_list(s, TRUSTED_GROUPS)]
    return trust_for(root, users, groups)
