"""What every OCI source needs besides its name and destination.

It lives here, below :mod:`capsa.pulling`, so that the sources (``oras`` among
them) can take it without importing the stage that orchestrates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from capsa.content import ContentCache
from capsa.digest import Platform
from capsa.registry import RegistryOptions
from capsa.squashfs import SquashfsOptions


@dataclass(frozen=True, slots=True)
class PullOptions:
    """Everything a pull needs besides the source and destination."""

    platform: Platform | None = None         # None: this host's
    cache: ContentCache | None = None        # None: --disable-cache
    tmpdir: Path = Path("/tmp")
    squashfs: SquashfsOptions = field(default_factory=SquashfsOptions)
    registry: RegistryOptions | None = None  # --no-https, credentials, authfile
    progress: Callable[[str, int, int], None] | None = None
    # SOURCE_DATE_EPOCH: byte-identical SIFs for the same image digest (no
    # file newer than it, synthesised files at it, nil UUID and zero times).
    epoch: int | None = None
