"""capsa as a library: what the command line does, for Python callers.

Every function takes a frozen request (the same one the CLI fills from argv
and the environment), returns typed results, raises from
:mod:`capsa.errors` and prints nothing (messages go to
:mod:`capsa.report`, which a caller may configure; none by default)::

    import capsa

    capsa.pull(capsa.PullRequest("docker://alpine:3.20", dest="alpine.sif"))
    status = capsa.run(capsa.ContainerRequest("alpine.sif", args=("cat", "/etc/os-release")))
    info = capsa.inspect("alpine.sif")
    info.labels["org.label-schema.build-arch"]

Containers run in a child process of their own (a container's start needs a
process without threads), so these functions are safe to call from any
thread of a larger program.  *site* is the site's settings
(:class:`capsa.site.SiteSettings`); *environ* locates the caller's own files
(cache, keys, scratch: :mod:`capsa.userdirs`), the process's by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capsa.runtime.request import ContainerRequest, Host
from capsa.site import DEFAULT_SETTINGS, SiteSettings

if TYPE_CHECKING:
    from capsa.builder.request import BuildRequest
    from capsa.integrity.verify import VerifyResult
    from capsa.pulling import PullRequest, PullResult
    from capsa.runtime.instance import Instance
    from capsa.runtime.metadata import ImageMetadata

Progress = Callable[[str, int, int], None]


# -- images ------------------------------------------------------------------------

def pull(request: PullRequest, *, site: SiteSettings = DEFAULT_SETTINGS,
         environ: Mapping[str, str] | None = None,
         progress: Progress | None = None) -> PullResult:
    """``capsa pull``: *request*'s URI to one SIF file; what was pulled."""
    from capsa.pulling import pull_request

    return pull_request(request, site=site, environ=environ, progress=progress)


def build(request: BuildRequest, *, site: SiteSettings = DEFAULT_SETTINGS,
          environ: Mapping[str, str] | None = None, progress: Progress | None = None) -> Path:
    """``capsa build``: a definition file, a URI or an image to a SIF file or
    a sandbox; where it was written.  An unprivileged build runs as root of
    a user namespace of its own, in a child process when this one has threads."""
    from capsa.builder.request import build_request

    return build_request(request, site=site, environ=environ, progress=progress)


def inspect(image: str, *, site: SiteSettings = DEFAULT_SETTINGS) -> ImageMetadata:
    """The metadata of a SIF, squashfs or sandbox *image*."""
    from capsa.runtime.image import close, resolve
    from capsa.runtime.metadata import image_metadata

    spec = resolve(image)
    try:
        return image_metadata(spec, mount=site.fuse)
    finally:
        close(spec)


def verify(image: str, *, keyring: str | None = None, key: str | None = None,
           legacy: bool = False) -> list[VerifyResult]:
    """The signatures of the SIF *image*, checked against *key* (a PEM
    public key, for DSSE signatures) or the OpenPGP *keyring* (default: the
    caller's and the site's); one result each.  Raises
    :class:`capsa.errors.SignatureError` when none is valid."""
    from capsa.integrity.verify import verify_with

    return verify_with(image, keyring=keyring, key=key, legacy=legacy)


# -- containers ----------------------------------------------------------------------

def run(request: ContainerRequest, *, site: SiteSettings = DEFAULT_SETTINGS,
        environ: Mapping[str, str] | None = None, cwd: str | None = None) -> int:
    """Run a container to its end on this process's standard streams; its
    exit status (``128 + N`` if killed by signal N).  The request is checked
    here (one error for bad input; the site's signing policy) and run in a
    child process.  A ``docker://`` image runs from the cache, pulled first
    if need be, as ``capsa exec docker://...`` does."""
    from capsa.integrity.policy import check_image
    from capsa.runtime.child import run_spec_in_child
    from capsa.runtime.request import container_spec

    host = _host(site, environ, cwd)
    if "://" in request.image:  # docker://..., as exec runs them: from the cache
        from capsa.pulling import PullRequest, open_for_run

        found = open_for_run(PullRequest(request.image), site=site, environ=environ)
        request = request._replace(image=str(found.path), image_fd=found.fd,
                                   image_ref=request.image_ref or request.image)
    spec = container_spec(request, host)
    try:
        # the site's signing policy binds library callers as it binds the CLI's
        check_image(spec.image.path, fd=spec.image.fd if spec.image.fd >= 0 else None,
                    site=site)
    except BaseException:
        from capsa.runtime.image import close

        close(spec.image)
        raise
    return run_spec_in_child(spec)


def exec(image: str, *command: str, site: SiteSettings = DEFAULT_SETTINGS,
         **fields: Any) -> int:
    """``capsa exec IMAGE COMMAND...``: :func:`run` of an ``exec`` request
    with *fields* (any of :class:`ContainerRequest`'s)."""
    request = ContainerRequest(image, action="exec", args=command)._replace(**fields)
    return run(request, site=site)


def start_instance(request: ContainerRequest, name: str, *,
                   site: SiteSettings = DEFAULT_SETTINGS) -> Instance:
    """``capsa instance start`` (``action="exec"`` runs the startscript with
    *request*'s args) or ``instance run`` (``action="run"``): the running
    instance."""
    from capsa.runtime.instance import get_instance
    from capsa.runtime.instance_process import start_request

    start_request(request, name, _host(site, None, None))
    return get_instance(name)


def instances(pattern: str = "*") -> list[Instance]:
    """The caller's running instances whose names match *pattern*."""
    from capsa.runtime.instance import list_instances

    return list_instances(pattern)


def stop_instance(name: str, *, signum: int | None = None, timeout: float = 10.0) -> None:
    """Stop the instance *name* as ``instance stop`` does (SIGINT, then
    SIGKILL after *timeout* seconds)."""
    import signal

    from capsa.runtime.instance import get_instance, stop_instances

    stop_instances([get_instance(name)], signum or signal.SIGINT, timeout)


def _host(site: SiteSettings, environ: Mapping[str, str] | None, cwd: str | None) -> Host:
    host = Host.current(site)
    return host._replace(environ=host.environ if environ is None else environ,
                         cwd=host.cwd if cwd is None else cwd)
