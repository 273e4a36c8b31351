"""A corpus of real definition files, built through the CLI and then run.

Each is built as root, as a user with subordinate ids (the build runs as
root of a user namespace over them) and as a user without (a root-mapped
namespace, fakeroot(1) keeping owners in its database), or, for the slow
ones, in the one identity that matters most (named in the test).  The base
is a real Debian (debootstrap from the mirror this machine's apt uses, in
the suite's registry); the ``%post`` sections run apt against that mirror,
and the tests skip, saying so, where it does not answer.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Capsa, Result
from support.debian import DebianBase, debian_base
from support.ocibuild import sif_cat, sif_listing
from support.registry import Registry, plain_registry  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def debian(plain_registry: Registry) -> Iterator[DebianBase]:  # noqa: F811
    yield from debian_base(plain_registry)


def _env(scratch: Path) -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / "cache"),
            "APPTAINER_TMPDIR": str(scratch / "tmp"), "APPTAINER_NOHTTPS": "1"}


def _build(capsa: Capsa, scratch: Path, text: str, name: str = "image.sif",
           *flags: str) -> Path:
    definition = scratch / "image.def"
    definition.write_text(textwrap.dedent(text))
    definition.chmod(0o644)
    _scratch_tmp(scratch)
    result = capsa("build", *flags, name, str(definition), cwd=scratch, env=_env(scratch),
                   timeout=1200)
    assert result.returncode == 0, str(result)
    assert "Traceback" not in result.stderr
    assert list((scratch / "tmp").iterdir()) == [], "the build left scratch behind"
    return scratch / name


def _scratch_tmp(scratch: Path) -> None:
    (scratch / "tmp").mkdir(exist_ok=True)
    (scratch / "tmp").chmod(0o1777)


def _run(capsa: Capsa, scratch: Path, *args: str) -> Result:
    result = capsa(*args, cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, str(result)
    return result


def _apt(debian: DebianBase) -> str:
    """One line (the definitions are dedented after it is put in) pointing
    apt at the host's mirror."""
    return (f'echo "{debian.sources_line()}" > /etc/apt/sources.list && '
            "rm -f /etc/apt/sources.list.d/*")


def _kind(capsa: Capsa) -> str:
    if capsa.user.is_root:
        return "root"
    return "no-subuid" if capsa.user.name.endswith("nosub") else "subuid"


# -- the tutorial's definition, in every identity ---------------------------------

def test_tutorial(every_capsa: Capsa, debian: DebianBase, scratch: Path) -> None:
    """git's recommends (openssh-client) add a system group in a package
    script: as root that failed while passwd/group were generated files."""
    sif = _build(every_capsa, scratch, f"""\
        Bootstrap: docker
        From: {debian.host}

        %post
            {_apt(debian)}
            apt-get update && apt-get install -y git wget

        %environment
            export LOG_DIR=/var/logs/tensorflow

        %runscript
            exec git --version

        %help
            This container includes git and wget.
        """)
    assert _run(every_capsa, scratch, "run", str(sif)).stdout.startswith("git version 2.")
    assert "This container includes git and wget." in _run(
        every_capsa, scratch, "run-help", str(sif)).stdout
    shown = _run(every_capsa, scratch, "exec", str(sif), "sh", "-c",
                 "echo $LOG_DIR; wget --version | head -n 1").stdout.splitlines()
    assert shown[0] == "/var/logs/tensorflow" and shown[1].startswith("GNU Wget")
    listing = sif_listing(sif)
    group = sif_cat(sif, "/etc/group").decode()
    ssh_gid = next(line.split(":")[2] for line in group.splitlines()
                   if line.startswith("_ssh:"))
    assert listing["/usr/bin/ssh-agent"] == ("-rwxr-sr-x", f"0/{ssh_gid}")
    assert listing["/usr/bin/passwd"] == ("-rwsr-xr-x", "0/0")
    assert listing["/var/lib/apt/lists/partial"][1] == "42/0"  # _apt's sandbox


# -- accounts, owners and setuid bits, in every identity -------------------------

def test_useradd_chown_and_a_command_as_that_user(every_capsa: Capsa, debian: DebianBase,
                                                  scratch: Path) -> None:
    sif = _build(every_capsa, scratch, f"""\
        Bootstrap: docker
        From: {debian.host}

        %post
            useradd --create-home --uid 1234 --shell /bin/sh alice
            mkdir -p /data/tree/sub
            echo hello > /data/tree/sub/file
            chown -R alice:alice /data/tree
            setpriv --reuid=alice --regid=alice --init-groups \\
                sh -c 'id -un > /data/tree/whoami; touch /data/tree/by-alice'
        """)
    listing = sif_listing(sif)
    for path in ("/data/tree", "/data/tree/sub", "/data/tree/sub/file", "/home/alice",
                 "/home/alice/.profile"):
        assert listing[path][1] == "1234/1234", path
    # fakeroot(1) records changes of owner, not the faked owner of new files.
    created = "0/0" if _kind(every_capsa) == "no-subuid" else "1234/1234"
    assert listing["/data/tree/by-alice"][1] == created
    assert sif_cat(sif, "/data/tree/whoami") == b"alice\n"
    assert "alice:x:1234:1234" in sif_cat(sif, "/etc/passwd").decode()
    shown = _run(every_capsa, scratch, "exec", str(sif), "cat", "/data/tree/sub/file")
    assert shown.stdout == "hello\n"


def test_setuid_bits_are_kept(every_capsa: Capsa, debian: DebianBase, scratch: Path) -> None:
    sif = _build(every_capsa, scratch, f"""\
        Bootstrap: docker
        From: {debian.host}

        %post
            cp /bin/true /usr/local/bin/mytool
            chmod 4755 /usr/local/bin/mytool
            chgrp shadow /usr/local/bin
            chmod 2775 /usr/local/bin
        """)
    listing = sif_listing(sif)
    assert listing["/usr/local/bin/mytool"] == ("-rwsr-xr-x", "0/0")
    assert listing["/usr/local/bin"] == ("drwxrwsr-x", "0/42")
    assert listing["/usr/bin/passwd"] == ("-rwsr-xr-x", "0/0")   # from the base
    assert listing["/usr/bin/chage"] == ("-rwxr-sr-x", "0/42")
    assert listing["/etc/shadow"] == ("-rw-r-----", "0/42")


def test_bootstrap_busybox(every_capsa: Capsa, scratch: Path) -> None:
    sif = _build(every_capsa, scratch, """\
        Bootstrap: busybox

        %post
            echo "from post" > /hello

        %runscript
            cat /hello
        """)
    assert _run(every_capsa, scratch, "run", str(sif)).stdout == "from post\n"


# -- the slow or special ones, in one identity -----------------------------------

def test_openmpi_program_compiled_in_post(capsa_user: Capsa, debian: DebianBase,
                                         scratch: Path) -> None:
    """As the user with subordinate ids (what the HPC images are built as):
    Open MPI's packages add the group rdma; an allreduce over 2 ranks."""
    sif = _build(capsa_user, scratch, f"""\
        Bootstrap: docker
        From: {debian.host}

        %post
            {_apt(debian)}
            apt-get update
            apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev gcc libc6-dev
            cat > /opt/allreduce.c <<'EOF'
        #include <mpi.h>
        #include <stdio.h>
        int main(int argc, char **argv) {{
            int rank, size, value, sum;
            MPI_Init(&argc, &argv);
            MPI_Comm_rank(MPI_COMM_WORLD, &rank);
            MPI_Comm_size(MPI_COMM_WORLD, &size);
            value = rank + 1;
            MPI_Allreduce(&value, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
            if (rank == 0) printf("size=%d sum=%d\\n", size, sum);
            MPI_Finalize();
            return 0;
        }}
        EOF
            mpicc -O2 -o /opt/allreduce /opt/allreduce.c
        """)
    assert "rdma:" in sif_cat(sif, "/etc/group").decode()
    result = _run(capsa_user, scratch, "exec", str(sif), "mpirun", "--oversubscribe",
                  "-np", "2", "/opt/allreduce")
    assert "size=2 sum=3" in result.stdout


def test_multi_stage_with_files_from(capsa_nosub: Capsa, debian: DebianBase,
                                     scratch: Path) -> None:
    """As the user without subordinate ids: one fakeroot database for both stages."""
    sif = _build(capsa_nosub, scratch, f"""\
        Bootstrap: docker
        From: {debian.host}
        Stage: build

        %post
            mkdir -p /opt/out
            echo "made in stage one" > /opt/out/artifact
            chown 4321:4321 /opt/out

        Bootstrap: docker
        From: {debian.host}
        Stage: final

        %files from build
            /opt/out/artifact /opt/artifact

        %runscript
            cat /opt/artifact
        """)
    assert _run(capsa_nosub, scratch, "run", str(sif)).stdout == "made in stage one\n"
    assert "/opt/out" not in sif_listing(sif)


def test_appinstall(capsa: Capsa, debian: DebianBase, scratch: Path) -> None:
    sif = _build(capsa, scratch, f"""\
        Bootstrap: docker
        From: {debian.host}

        %appinstall hello
            printf '#!/bin/sh\\necho "hello from $SCIF_APPNAME: $*"\\n' > bin/hello
            chmod 755 bin/hello

        %apprun hello
            exec hello "$@"

        %apphelp hello
            Says hello.
        """)
    assert _run(capsa, scratch, "run", "--app", "hello", str(sif), "there").stdout == \
        "hello from hello: there\n"
    assert "hello" in _run(capsa, scratch, "inspect", "--list-apps", str(sif)).stdout
    assert "Says hello." in _run(capsa, scratch, "run-help", "--app", "hello", str(sif)).stdout


def test_bootstrap_debootstrap_without_root(capsa_user: Capsa, debian: DebianBase,
                                            scratch: Path) -> None:
    """As the user with subordinate ids (root's debootstrap is tested in
    test_build_cli): mount and mknod are faked, owners are real."""
    debian.sources_line()  # skips when the mirror does not answer
    sif = _build(capsa_user, scratch, f"""\
        Bootstrap: debootstrap
        OSVersion: bookworm
        MirrorURL: {debian.mirror}

        %post
            echo built > /etc/marker
        """)
    assert _run(capsa_user, scratch, "exec", str(sif), "cat", "/etc/marker").stdout == "built\n"
    listing = sif_listing(sif)
    assert listing["/usr/bin/passwd"] == ("-rwsr-xr-x", "0/0")
    assert listing["/etc/shadow"][1] == "0/42"


def test_bootstrap_localimage_from_a_sif(capsa_user: Capsa, debian: DebianBase,
                                         scratch: Path) -> None:
    sif = _build(capsa_user, scratch, f"""\
        Bootstrap: localimage
        From: {debian.sif}

        %post
            echo local > /etc/from-local
        """)
    assert _run(capsa_user, scratch, "exec", str(sif), "cat", "/etc/from-local").stdout == \
        "local\n"
    assert sif_listing(sif)["/etc/shadow"] == ("-rw-r-----", "0/42")


# -- failures ----------------------------------------------------------------------

def test_failing_post_without_subordinate_ids_says_what_to_do(
        capsa_nosub: Capsa, debian: DebianBase, scratch: Path) -> None:
    definition = scratch / "bad.def"
    definition.write_text(f"Bootstrap: docker\nFrom: {debian.host}\n\n%post\n    exit 3\n")
    definition.chmod(0o644)
    _scratch_tmp(scratch)
    result = capsa_nosub("build", "bad.sif", str(definition), cwd=scratch, env=_env(scratch))
    assert result.returncode == 255, result
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL:")]
    assert fatal == ["FATAL:   While performing build: while running %post: exit status 3"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 1 and "/etc/subuid" in warnings[0], result
    assert not (scratch / "bad.sif").exists()
    assert list((scratch / "tmp").iterdir()) == []
