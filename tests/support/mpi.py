"""MPI programs and images for the HPC tests and the benchmark.

Two models, as Apptainer documents them:

- **hybrid**: Open MPI inside the image (built by capsa from
  :func:`hybrid_definition`: Debian's ``openmpi-bin``, the programs compiled
  in ``%post``), the host's ``mpirun`` or ``srun --mpi=pmix`` outside;
- **bind**: an image without MPI, the host's Open MPI bound in: a prefix
  directory (:func:`host_mpi_prefix`) of hard links to the host's Open MPI
  libraries, their dependencies and plugins, with the programs compiled on
  the host by its ``mpicc``.

``allreduce`` prints ``size=N sum=S userns=K``: K is how many distinct user
namespaces the ranks ran in (1 when they shared one container).
``pingpong`` prints the 8-byte latency and 1 MiB bandwidth between two ranks,
after checking every byte received.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from support.cli import Capsa

ALLREDUCE = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned long user_namespace(void) {
    char link[64] = {0};
    if (readlink("/proc/self/ns/user", link, sizeof link - 1) < 0) return 0;
    return strtoul(link + 6, NULL, 10);  /* user:[NNN] */
}

int main(int argc, char **argv) {
    int rank, size, value, sum, distinct = 0;
    unsigned long mine, *all = NULL;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    value = rank + 1;
    MPI_Allreduce(&value, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    mine = user_namespace();
    if (rank == 0) all = malloc(sizeof *all * size);
    MPI_Gather(&mine, 1, MPI_UNSIGNED_LONG, all, 1, MPI_UNSIGNED_LONG, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (int i = 0; i < size; i++) {
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= all[j] == all[i];
            distinct += !seen;
        }
        printf("size=%d sum=%d userns=%d\n", size, sum, distinct);
    }
    MPI_Finalize();
    return 0;
}
"""

PINGPONG = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double pingpong(int rank, char *buf, int bytes, int iters) {
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - start) / iters / 2;  /* one way */
}

int main(int argc, char **argv) {
    int rank, size, iters = argc > 1 ? atoi(argv[1]) : 2000, big = 1 << 20;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0) fprintf(stderr, "pingpong needs 2 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    char *buf = malloc(big);
    for (int i = 0; i < big; i++) buf[i] = (char)(i * 7 + 3);
    pingpong(rank, buf, 8, iters / 10);
    double latency = pingpong(rank, buf, 8, iters);
    pingpong(rank, buf, big, 10);
    double one_way = pingpong(rank, buf, big, iters / 10 + 1);
    int bad = 0;
    for (int i = 0; i < big; i++) bad += buf[i] != (char)(i * 7 + 3);
    if (rank == 0)
        printf("latency_us=%.3f bandwidth_MBps=%.1f bad_bytes=%d\n", latency * 1e6,
               big / one_way / 1e6, bad);
    free(buf);
    MPI_Finalize();
    return bad != 0;
}
"""

PROGRAMS = {"allreduce": ALLREDUCE, "pingpong": PINGPONG}
# What Open MPI prints, once per rank, when ranks sit in different user
# namespaces (btl/vader then copies through shared memory twice).
CMA_WARNING = "CMA is not available due to different user namespaces"


def write_sources(directory: Path) -> Path:
    """The programs' C files in *directory* (readable by a build's %files)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in PROGRAMS.items():
        (directory / f"{name}.c").write_text(text)
        (directory / f"{name}.c").chmod(0o644)
    directory.chmod(0o755)
    return directory


def hybrid_definition(base_ref: str, sources_line: str, sources: Path) -> str:
    """Open MPI and the programs, compiled in %post, on the Debian base."""
    files = "\n".join(f"    {sources}/{name}.c /opt/src/{name}.c" for name in PROGRAMS)
    compile_lines = "\n".join(f"    mpicc -O2 -o /opt/{name} /opt/src/{name}.c"
                              for name in PROGRAMS)
    return f"""\
Bootstrap: docker
From: {base_ref}

%files
{files}

%post
    echo "{sources_line}" > /etc/apt/sources.list
    rm -f /etc/apt/sources.list.d/*
    apt-get update
    apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev gcc libc6-dev
{compile_lines}
    apt-get clean
    rm -rf /var/lib/apt/lists/*
"""


@dataclass(frozen=True)
class HostMpi:
    """The host's Open MPI as a prefix directory to bind at :attr:`INSIDE`."""

    prefix: Path

    INSIDE = "/opt/hostmpi"

    def flags(self) -> list[str]:
        """capsa flags binding it in and pointing Open MPI and the loader at it."""
        inside = self.INSIDE
        env = {"LD_LIBRARY_PATH": f"{inside}/lib", "OPAL_PKGLIBDIR": f"{inside}/lib/openmpi3",
               "OPAL_PKGDATADIR": f"{inside}/share/openmpi",
               "OPAL_SYSCONFDIR": f"{inside}/etc"}
        flags = ["-B", f"{self.prefix}:{inside}:ro"]
        for key, value in env.items():
            flags += ["--env", f"{key}={value}"]
        return flags

    def program(self, name: str) -> str:
        return f"{self.INSIDE}/bin/{name}"


_LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
_OMPI = _LIBDIR / "openmpi" / "lib"
# Left to the image: the C library, and what any Debian base has.
_FROM_IMAGE = re.compile(r"^(ld-linux.*|libc|libm|libdl|libpthread|librt|libresolv|libutil|"
                         r"libgcc_s|libz)\.so")


def host_mpi_prefix(dest: Path, sources: Path) -> HostMpi:
    """The bind model's prefix: the programs built by the host's mpicc, and
    every library they and Open MPI's plugins load, hard-linked (copied
    across filesystems) from the host."""
    for sub in ("bin", "lib/openmpi3", "share", "etc"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for name in PROGRAMS:
        subprocess.run(["mpicc", "-O2", "-o", str(dest / "bin" / name),
                        str(sources / f"{name}.c")], check=True, capture_output=True)
    plugins = sorted((_OMPI / "openmpi3").glob("*.so"))
    for plugin in plugins:
        _link(plugin, dest / "lib" / "openmpi3" / plugin.name)
    needed: set[Path] = set()
    for binary in [*(dest / "bin").iterdir(), *plugins]:
        needed |= _libraries(binary)
    for library in needed:
        _link(library, dest / "lib" / library.name)
    shutil.copytree("/usr/share/openmpi", dest / "share" / "openmpi", dirs_exist_ok=True)
    shutil.copytree("/etc/openmpi", dest / "etc", dirs_exist_ok=True)
    # Directories only: the files are the host's own (hard links), readable already.
    for root, dirs, _files in os.walk(dest):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(dest, 0o755)
    return HostMpi(dest)


def _libraries(binary: Path) -> set[Path]:
    """The shared libraries *binary* loads (ldd), less the image's own."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        words = line.split("=>")
        if len(words) != 2 or not words[1].strip().startswith("/"):
            continue
        name = words[0].strip()
        if _FROM_IMAGE.match(name):
            continue
        found.add(Path(words[1].split()[0]))
    return found


def _link(source: Path, dest: Path) -> None:
    """*dest* is the file *source* names (a hard link to it; a copy elsewhere)."""
    real = Path(os.path.realpath(source))
    if dest.exists():
        return
    try:
        os.link(real, dest)
    except OSError:
        shutil.copy2(real, dest)


def build_hybrid_image(capsa: Capsa, base_ref: str, sources_line: str, work: Path) -> Path:
    """``capsa build`` of :func:`hybrid_definition` in *work* (as *capsa*'s user)."""
    sources = write_sources(work / "src")
    definition = work / "mpi.def"
    definition.write_text(hybrid_definition(base_ref, sources_line, sources))
    definition.chmod(0o644)
    (work / "tmp").mkdir(exist_ok=True)
    (work / "tmp").chmod(0o1777)
    env = {"APPTAINER_CACHEDIR": str(work / "cache"), "APPTAINER_TMPDIR": str(work / "tmp"),
           "APPTAINER_NOHTTPS": "1"}
    result = capsa("build", "mpi.sif", str(definition), cwd=work, env=env, timeout=1200)
    if result.returncode != 0:
        raise RuntimeError(f"building the MPI image failed\n{result}")
    image = work / "mpi.sif"
    image.chmod(0o755)
    return image
