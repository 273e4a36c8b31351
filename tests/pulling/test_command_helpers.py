"""The pull and cache commands' helpers: default names, sizes, platform flags."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("uri", "name"), [
    ("docker://alpine", "alpine_latest.sif"),
    ("docker://alpine:3.19", "alpine_3.19.sif"),
    ("docker://127.0.0.1:5000/lab/tool:v2", "tool_v2.sif"),
    ("oras://ghcr.io/org/img:1.0", "img_1.0.sif"),
    ("oci-archive:/data/my-image.tar", "my-image.sif"),
    ("docker-archive:/data/saved.tar", "saved.sif"),
    ("oci:/data/layout:v1", "layout.sif"),
])
def test_default_name(uri: str, name: str) -> None:
    from capsa.pulling import default_name

    assert default_name(uri) == name


def test_find_size() -> None:
    from capsa.cli.commands.cache import find_size

    assert find_size(0) == "0.00 KiB"
    assert find_size(174) == "0.17 KiB"
    assert find_size(37_318_000) == "35.59 MiB"
    assert find_size(3 << 30) == "3.00 GiB"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--arch", "arm64"], "linux/arm64"), (["--arch", "arm32v7"], "linux/arm/v7"),
    (["--arch", "amd64"], "linux/amd64"), (["--platform", "linux/arm/v6"], "linux/arm/v6"),
    (["--arch", "arm", "--arch-variant", "v5"], "linux/arm/v5"), ([], "None"),
])
def test_platform_flags(argv: list[str], expected: str) -> None:
    import argparse

    from capsa.cli.commands.pull import configure
    from capsa.pulling import platform_for

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args([*argv, "docker://x"])
    assert str(platform_for(args.platform, args.arch, args.arch_variant)) == expected
