"""Problem 1: the signature is checked on the file that runs.

A symbolic link flips between a signed image and an unsigned one as fast as
a thread can flip it, while ``exec --require-signed`` runs many times
through it.  Each run either runs the signed image or refuses; running the
unsigned one even once is a failure.  (Before capsa opened the image once,
18 runs in 60 ran the unsigned image.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa
from trust import figures
from trust.conftest import scratch_dir

pytestmark = pytest.mark.needs_userns

TRIES = int(os.environ.get("CAPSA_TRUST_RACE_TRIES", "10"))


class Flipper:
    """Point *link* at *a*, then *b*, then *a*... until stopped (atomically:
    a new link renamed over the old one)."""

    def __init__(self, link: Path, a: Path, b: Path) -> None:
        self.link, self.targets = link, (a, b)
        self.flips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        spare = self.link.with_name(self.link.name + ".new")
        while not self._stop.is_set():
            target = self.targets[self.flips % 2]
            spare.unlink(missing_ok=True)
            os.symlink(target, spare)
            os.replace(spare, self.link)
            self.flips += 1

    def __enter__(self) -> Flipper:
        os.symlink(self.targets[0], self.link)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def race_dir() -> Iterator[Path]:
    import shutil

    path = scratch_dir("trust-race-", 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_swapped_image_never_runs_unsigned(any_capsa: Capsa, signed_images: dict[str, Path],
                                             race_dir: Path) -> None:
    """Every other try extracts the image (--unsquash) instead of mounting it."""
    link = race_dir / "img.sif"
    argv = ["exec", "--require-signed", str(signed_images["site_key"]), str(link),
            "cat", "/etc/marker"]
    ran = {"signed": 0, "evil": 0, "refused": 0}
    with Flipper(link, signed_images["signed"], signed_images["evil"]) as flipper:
        for attempt in range(TRIES):
            extract = ["--unsquash"] if attempt % 2 else []
            result = any_capsa(argv[0], *extract, *argv[1:], env={"TMPDIR": str(race_dir)},
                               timeout=60)
            if result.returncode == 0:
                ran[result.stdout.strip()] += 1
            else:
                assert result.stderr.startswith("FATAL:   "), result
                assert "is not signed by a key in" in result.stderr, result
                ran["refused"] += 1
    figures.add("race", TRIES, ran["evil"])
    assert ran["evil"] == 0, ran
    assert ran["signed"] > 0 and flipper.flips > TRIES, (ran, flipper.flips)
