"""Snakemake (``--software-deployment-method apptainer``): it checks the
version, pulls the rule's image (``apptainer pull --name <md5>.simg``) and
runs each job in it, two at a time."""

from __future__ import annotations

from tests.clients.conftest import Client

_SNAKEFILE = """\
shell.executable("/bin/sh")  # the image has no bash

rule all:
    input: "a.txt", "b.txt"

rule make:
    output: "{{name}}.txt"
    container: "docker://{ref}"
    shell: "echo {{wildcards.name}} $(id -un) $PWD $GREETING > {{output}}"
"""


def test_snakemake_workflow(client: Client, busybox_ref: str) -> None:
    (client.workdir / "Snakefile").write_text(_SNAKEFILE.format(ref=busybox_ref))
    done = client.run("snakemake", "--cores", "2", "--software-deployment-method", "apptainer")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    user, work = client.user.name, client.workdir
    assert (work / "a.txt").read_text() == f"a {user} {work} hello world\n"
    assert (work / "b.txt").read_text() == f"b {user} {work} hello world\n"
    # pulled once, as <md5 of the URL>.simg, where $APPTAINER_CACHEDIR says
    pulled = list((work / "cache").glob("*.simg"))
    assert len(pulled) == 1, pulled
