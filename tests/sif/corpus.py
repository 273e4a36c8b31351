"""The reference corpus: images, siftool goldens and which belongs to which."""

from __future__ import annotations

import re

from support.env import INTEROP

IMAGES = INTEROP / "images"
GOLDEN = INTEROP / "siftool-golden"


def image_for(golden_name: str) -> str:
    """``OneGroupSignedPGP`` -> ``one-group-signed-pgp.sif``."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|$)|[A-Z][a-z]*|[a-z]+|\d+", golden_name)
    return "-".join(w.lower() for w in words) + ".sif"


def golden_names(kind: str) -> list[str]:
    """The golden files of TestApp_<kind> (empty when ../shared is absent)."""
    folder = GOLDEN / f"TestApp_{kind}"
    return sorted(p.stem for p in folder.glob("*.golden")) if folder.is_dir() else []


# TestApp_Info goldens: (image, object id), from sylabs/sif's siftool tests.  The
# partition ones use two-groups-signed-pgp.sif upstream; its first three objects
# are those of two-groups.sif, which the corpus holds.
INFO_CASES = {
    "Time": ("one-object-time.sif", 1),
    "GenericJSON": ("one-object-generic-json.sif", 1),
    "CryptMessage": ("one-object-crypt-message.sif", 1),
    "SBOM": ("one-object-sbom.sif", 1),
    "OCIRootIndex": ("one-object-oci-root-index.sif", 1),
    "OCIBlob": ("one-object-oci-blob.sif", 1),
    "DataPartitionRaw": ("two-groups.sif", 1),
    "DataPartitionSquashFS": ("two-groups.sif", 2),
    "DataPartitionEXT3": ("two-groups.sif", 3),
}
