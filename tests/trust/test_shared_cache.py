"""Problems 3 and 4: a cache shared by a group cannot be poisoned.

The set-up the README describes: the site makes the cache directory, owned
by root and the group ``capsashare`` (mode 2775); its members ``capsatest``
and ``capsaevil`` both write there.  ``capsaevil`` plants what it can where
the victim (root, or ``capsatest``) will look: a forged SIF under an
image's key (recording the right digests), a symbolic link or a directory
where a lock file goes, a directory where an entry goes, a forged blob, a
lock held forever, the cache's own directories.  The victim must run and
pull the genuine image every time, with a warning, never fail for good, and
never create a file where a planted link points.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ocibuild
from support.cli import Capsa, Result
from support.images import make_rootfs, make_squashfs
from support.registry import Registry
from support.site import site_env
from support.users import User, ensure_test_user
from support.waiting import until
from trust import figures
from trust.conftest import scratch_dir

pytestmark = [pytest.mark.needs_userns, pytest.mark.needs_root]

GROUP = "capsashare"
DIGEST_LABEL = "org.opencontainers.image.base.digest"
CONFIG_LABEL = "capsa.image.base.config.digest"
METADATA_NAME = "inspect-metadata.json"
GOOD = "trust/good:latest"
OTHER = "trust/other:latest"


@dataclass(frozen=True)
class Published:
    ref: str
    manifest: str
    config: str
    layers: tuple[tuple[str, int], ...]  # digest, size

    @property
    def key(self) -> str:
        from capsa.content import sif_cache_key
        from capsa.registry import host_platform

        platform = host_platform()
        return sif_cache_key(self.manifest, platform.architecture, platform.variant)


def _publish(registry: Registry, name: str, marker: str) -> Published:
    members = [*ocibuild.busybox_members(),
               ocibuild.Member("etc/marker", data=f"{marker}\n".encode())]
    from capsa.registry import host_platform

    image = ocibuild.image([ocibuild.layer(members)], arch=host_platform().architecture)
    blobs = [image.config, *(layer.blob for layer in image.layers)]
    manifest = registry.push_raw(name.split(":")[0], image.manifest, blobs,
                                 reference=name.split(":")[1])
    return Published(registry.ref(name), manifest, ocibuild.sha256(image.config),
                     tuple((ocibuild.sha256(layer.blob), len(layer.blob))
                           for layer in image.layers))


def _forged_sif(work: Path, claims: Published) -> Path:
    """A SIF of the attacker's root filesystem that records *claims*' digests
    where Apptainer and capsa record them (an attacker can read the code)."""
    from capsa.sif import DataType, FSType, NewObject, PartType, create, host_goarch, sif_arch

    rootfs = make_rootfs(work / "evil-root")
    (rootfs / "etc/marker").write_text("evil\n")
    squashfs = make_squashfs(rootfs, work / "evil.sqfs")
    labels = {DIGEST_LABEL: claims.manifest, CONFIG_LABEL: claims.config}
    record = json.dumps({"data": {"attributes": {"labels": labels}}, "type": "container"})
    forged = work / "forged.sif"
    create(forged, [
        NewObject(DataType.DEFFILE, data=b"bootstrap: docker\n"),
        NewObject(DataType.GENERIC_JSON, data=record.encode(), name=METADATA_NAME),
        NewObject(DataType.PARTITION, path=str(squashfs), fs_type=FSType.SQUASHFS,
                  part_type=PartType.PRIMSYS, arch=sif_arch(host_goarch())),
    ])
    forged.chmod(0o644)
    return forged


def _ensure_group(*users: User) -> int:
    subprocess.run(["groupadd", "-f", GROUP], check=True)
    for user in users:
        subprocess.run(["usermod", "-a", "-G", GROUP, user.name], check=True)
    return grp.getgrnam(GROUP).gr_gid


@dataclass
class Share:
    """One shared cache, as the README sets it up, and the images it serves."""

    gid: int
    good: Published
    other: Published
    forged: Path
    work: Path
    anchor: Path = Path()

    @property
    def cache(self) -> Path:
        return self.anchor / "cache"

    def fresh(self, *, sticky: bool = False, layout: bool = True) -> None:
        """A new, empty shared cache (the site makes its directories)."""
        self.anchor = scratch_dir("trust-share-")
        for path in (self.anchor, self.cache):
            path.mkdir(exist_ok=True)
            os.chown(path, 0, self.gid)
            os.chmod(path, 0o3775 if sticky else 0o2775)
        if layout:
            from capsa.content import ContentCache

            ContentCache(self.cache).ensure()
            for path in self.cache.rglob("*"):  # what capsa makes already; older did not
                if path.is_dir():
                    os.chown(path, 0, self.gid)
                    os.chmod(path, 0o3775 if sticky else 0o2775)

    def env(self, capsa: Capsa) -> dict[str, str]:
        tmp = self.work / f"tmp-{capsa.user.name}"
        tmp.mkdir(mode=0o700, exist_ok=True)
        os.chown(tmp, capsa.user.uid, capsa.user.gid)
        return {"APPTAINER_CACHEDIR": str(self.anchor), "TMPDIR": str(tmp)}

    def entry(self, published: Published) -> Path:
        return self.cache / "oci-tmp" / published.key

    def lock(self, published: Published) -> Path:
        return self.cache / ".locks" / f"sif-{published.key}"


@pytest.fixture(scope="module")
def share(plain_registry: Registry, hostile: User) -> Iterator[Share]:
    gid = _ensure_group(ensure_test_user(), hostile)
    work = scratch_dir("trust-share-work-", 0o1777)
    good = _publish(plain_registry, GOOD, "good")
    other = _publish(plain_registry, OTHER, "other")
    shared = Share(gid, good, other, _forged_sif(work, good), work)
    yield shared
    shutil.rmtree(work, ignore_errors=True)


def as_user(user: User, script: str) -> None:
    """Run *script* (sh) as *user*: what the attacker can do, it does itself."""
    subprocess.run(user.wrap(["sh", "-ec", script]), check=True)


def _victim_runs(victim: Capsa, share: Share, scratch: Path) -> list[str]:
    """The victim runs and pulls the good image: what it saw each time."""
    env = share.env(victim)
    seen = []
    for _ in range(2):  # and again: a planted thing is never a lasting failure
        ran = victim("exec", "--no-https", share.good.ref, "cat", "/etc/marker", env=env,
                     cwd=scratch, timeout=120)
        _assert_clean_run(ran)
        seen.append(ran.stdout.strip())
    dest = scratch / f"pulled-{victim.user.name}.sif"
    dest.unlink(missing_ok=True)
    pulled = victim("pull", "--no-https", str(dest), share.good.ref, env=env, cwd=scratch,
                    timeout=120)
    _assert_clean_run(pulled)
    seen.append(ocibuild.sif_cat(dest, "etc/marker").decode().strip())
    return seen


def _assert_clean_run(result: Result) -> None:
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr and "FATAL" not in result.stderr, result


Plant = Callable[[Share, User], Path | None]


def plant_forged_sif(share: Share, evil: User) -> None:
    as_user(evil, f"cp {share.forged} {share.entry(share.good)}")


def plant_lock_link(share: Share, evil: User) -> Path:
    target = share.work / f"made-by-victim-{os.urandom(3).hex()}"
    as_user(evil, f"ln -s {target} {share.lock(share.good)}")
    return target


def plant_entry_dir(share: Share, evil: User) -> None:
    as_user(evil, f"mkdir {share.entry(share.good)}; touch {share.entry(share.good)}/x")


def plant_lock_dir(share: Share, evil: User) -> None:
    as_user(evil, f"mkdir {share.lock(share.good)}; touch {share.lock(share.good)}/x")


def plant_forged_blob(share: Share, evil: User) -> None:
    """Blobs of the right size and the wrong content, where the layers go."""
    for digest, size in share.good.layers:
        blob = share.cache / "blob/blobs/sha256" / digest.split(":", 1)[1]
        as_user(evil, f"head -c {size} /dev/zero > {blob}")


def plant_held_lock(share: Share, evil: User) -> None:
    lock = share.lock(share.good)
    subprocess.Popen(evil.wrap(["flock", "-x", str(lock), "sleep", "90"]),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert until(lambda: lock.exists())


def plant_layout(share: Share, evil: User) -> None:
    """The attacker makes the cache's own directories before anyone else."""
    as_user(evil, f"mkdir -p {share.cache}/oci-tmp {share.cache}/blob/blobs/sha256 "
                  f"{share.cache}/.locks {share.cache}/oras")


def plant_stale_trusted_entry(share: Share, evil: User) -> None:
    """Not an attack by the hostile user: a trusted user's entry that does
    not match what the registry names now (another image's conversion)."""
    del evil
    from capsa.content import ContentCache
    from capsa.pulling import PullOptions, open_cached_image
    from capsa.registry import RegistryOptions

    options = PullOptions(cache=ContentCache(share.cache), tmpdir=share.work,
                          registry=RegistryOptions(no_https=True))
    found = open_cached_image(share.other.ref, options)
    os.close(found.fd)
    shutil.copy(found.path, share.entry(share.good))


ATTACKS: dict[str, tuple[Plant, dict[str, bool]]] = {
    "forged-sif": (plant_forged_sif, {}),
    "forged-sif-sticky": (plant_forged_sif, {"sticky": True}),
    "lock-symlink": (plant_lock_link, {}),
    "lock-symlink-sticky": (plant_lock_link, {"sticky": True}),
    "entry-directory": (plant_entry_dir, {}),
    "entry-directory-sticky": (plant_entry_dir, {"sticky": True}),
    "lock-directory": (plant_lock_dir, {}),
    "forged-blob": (plant_forged_blob, {}),
    "held-lock": (plant_held_lock, {}),
    "untrusted-layout": (plant_layout, {"layout": False}),
    "stale-trusted-entry": (plant_stale_trusted_entry, {}),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_hostile_user_cannot_poison_the_cache(any_capsa: Capsa, share: Share, hostile: User,
                                                scratch: Path, attack: str) -> None:
    plant, layout = ATTACKS[attack]
    share.fresh(**layout)
    try:
        target = plant(share, hostile)
        seen = _victim_runs(any_capsa, share, scratch)
        created = target is not None and os.path.lexists(target)
        figures.add("poisoning", 1, int(seen != ["good"] * 3 or created))
        assert seen == ["good"] * 3, seen
        assert not created, f"the victim created {target} where the planted link pointed"
    finally:
        subprocess.run(["pkill", "-u", hostile.name, "-x", "flock"], check=False)
        shutil.rmtree(share.anchor, ignore_errors=True)


def test_what_is_planted_is_reported(capsa_user: Capsa, share: Share, hostile: User,
                                     scratch: Path) -> None:
    share.fresh()
    try:
        plant_forged_sif(share, hostile)
        ran = capsa_user("exec", "--no-https", share.good.ref, "cat", "/etc/marker",
                         env=share.env(capsa_user), cwd=scratch)
        assert ran.stdout == "good\n", ran
        assert (f"WARNING: not using cache entry {share.entry(share.good)}: it belongs to "
                f"uid {hostile.uid}, whom this user does not trust") in ran.stderr, ran
    finally:
        shutil.rmtree(share.anchor, ignore_errors=True)


def test_the_group_shares_what_trusted_users_pulled(capsa: Capsa, capsa_user: Capsa,
                                                    share: Share, scratch: Path) -> None:
    """Sharing still works: root's conversion serves the test user (root is
    always trusted), and a user the site names serves root."""
    share.fresh()
    try:
        first = capsa("exec", "--no-https", share.good.ref, "cat", "/etc/marker",
                      env=share.env(capsa), cwd=scratch)
        assert first.stdout == "good\n", first
        reused = capsa_user("exec", "--no-https", share.good.ref, "cat", "/etc/marker",
                            env=share.env(capsa_user), cwd=scratch)
        assert reused.stdout == "good\n" and "Using cached SIF image" in reused.stderr, reused
    finally:
        shutil.rmtree(share.anchor, ignore_errors=True)
    share.fresh()
    site = scratch_dir("trust-share-site-")
    try:
        (site / "capsa.conf").write_text(f"cache trusted users = {capsa_user.user.name}\n")
        (site / "capsa.conf").chmod(0o644)
        env = site_env(config_dir=str(site))
        first = capsa_user("exec", "--no-https", share.good.ref, "cat", "/etc/marker",
                           env={**share.env(capsa_user), **env}, cwd=scratch)
        assert first.stdout == "good\n", first
        assert os.stat(share.entry(share.good)).st_uid == capsa_user.user.uid
        reused = capsa("exec", "--no-https", share.good.ref, "cat", "/etc/marker",
                       env={**share.env(capsa), **env}, cwd=scratch)
        assert reused.stdout == "good\n" and "Using cached SIF image" in reused.stderr, reused
        distrusted = capsa("exec", "--no-https", share.good.ref, "cat", "/etc/marker",
                           env=share.env(capsa), cwd=scratch)
        assert "Using cached SIF image" not in distrusted.stderr, distrusted
    finally:
        shutil.rmtree(share.anchor, ignore_errors=True)
        shutil.rmtree(site, ignore_errors=True)
