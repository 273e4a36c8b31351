"""``capsa build`` through the command line, as root and as an unprivileged
user: definition files on every agent we can run here, then run/exec/inspect
of the result; failures leave nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from support.cli import Capsa, Result
from support.ocibuild import sif_listing

from .conftest import BuildImages

pytestmark = pytest.mark.needs_userns

APP_DEF = """\
Bootstrap: localimage
From: {base}

%arguments
    GREETING=hello

%files
    {data} /opt/data/input.txt

%post
    echo "post runs as $(id -u)"
    mkdir -p /opt/app
    cat /opt/data/input.txt > /opt/app/copied
    echo 'export FROM_POST=posted' >> $APPTAINER_ENVIRONMENT
    echo "post.label yes" >> $APPTAINER_LABELS

%environment
    export GREETING="{{{{ GREETING }}}} from env"

%runscript
    echo "run: $GREETING / $FROM_POST / $*"

%labels
    Author capsa tests
    Version 1.2

%help
    This is the built app.

%test
    test -f /opt/app/copied
    echo "the test ran"
"""


def _env(scratch: Path) -> dict[str, str]:
    return {"APPTAINER_CACHEDIR": str(scratch / "cache"), "APPTAINER_TMPDIR": str(scratch / "tmp")}


def _write_def(scratch: Path, text: str, name: str = "app.def") -> Path:
    path = scratch / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def _app_def(scratch: Path, base: Path) -> Path:
    data = scratch / "input.txt"
    data.write_text("payload\n")
    data.chmod(0o644)
    return _write_def(scratch, APP_DEF.format(base=base, data=data))


def _fatal_only(result: Result) -> None:
    assert result.returncode == 255, result
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL:")]
    assert len(fatal) == 1, result
    assert "Traceback" not in result.stderr, result


def _leftovers(scratch: Path) -> list[str]:
    names = [p.name for p in scratch.iterdir() if p.name not in ("cache", "tmp")]
    tmp = scratch / "tmp"
    if tmp.is_dir():
        names += [f"tmp/{p.name}" for p in tmp.iterdir()]
    return sorted(names)


def test_localimage_definition_to_sif(any_capsa: Capsa, build_images: BuildImages,
                                      scratch: Path) -> None:
    definition = _app_def(scratch, build_images.sif)
    result = any_capsa("build", "--build-arg", "GREETING=hi", "app.sif", str(definition),
                       cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    for line in ("INFO:    Starting build...", "INFO:    Running post scriptlet",
                 "INFO:    Adding runscript", "INFO:    Running testscript",
                 "INFO:    Creating SIF file...", "INFO:    Build complete: app.sif"):
        assert line in result.stderr, result
    assert "post runs as 0" in result.stdout + result.stderr
    assert "the test ran" in result.stdout + result.stderr
    sif = scratch / "app.sif"
    run = any_capsa("run", str(sif), "a", "b", cwd=scratch)
    assert run.returncode == 0, run
    assert "run: hi from env / posted / a b" in run.stdout
    cat = any_capsa("exec", str(sif), "cat", "/opt/app/copied", "/opt/data/input.txt",
                    cwd=scratch)
    assert cat.stdout == "payload\npayload\n", cat
    labels = any_capsa("inspect", "--json", "--labels", str(sif), cwd=scratch)
    assert labels.returncode == 0, labels
    text = labels.stdout
    for fragment in ('"Author": "capsa tests"', '"Version": "1.2"', '"post.label": "yes"',
                     "org.label-schema.build-date",
                     '"org.label-schema.usage": "/.singularity.d/runscript.help"',
                     '"org.label-schema.usage.singularity.deffile.bootstrap": "localimage"'):
        assert fragment in text, labels
    helped = any_capsa("inspect", "--helpfile", str(sif), cwd=scratch)
    assert "This is the built app." in helped.stdout, helped
    deffile = any_capsa("inspect", "--deffile", str(sif), cwd=scratch)
    assert "%post" in deffile.stdout and "{{ GREETING }}" not in deffile.stdout, deffile
    assert _leftovers(scratch) == ["app.def", "app.sif", "input.txt"]


def test_sandbox_then_sif_from_sandbox(any_capsa: Capsa, build_images: BuildImages,
                                       scratch: Path) -> None:
    definition = _app_def(scratch, build_images.sandbox)
    result = any_capsa("build", "--sandbox", "-T", "box", str(definition), cwd=scratch,
                       env=_env(scratch))
    assert result.returncode == 0, result
    assert "Running testscript" not in result.stderr
    assert "INFO:    Creating sandbox directory..." in result.stderr
    box = scratch / "box"
    assert (box / "opt/app/copied").read_text() == "payload\n"
    assert (box / ".singularity.d/Singularity").is_file()
    assert not (box / ".post.script").exists()
    run = any_capsa("run", str(box), cwd=scratch)
    assert "run: hello from env / posted /" in run.stdout, run
    again = any_capsa("build", "box.sif", "box", cwd=scratch, env=_env(scratch))
    assert again.returncode == 0, again
    cat = any_capsa("exec", "box.sif", "cat", "/opt/app/copied", cwd=scratch)
    assert cat.stdout == "payload\n", cat


def test_docker_bootstrap_from_registry(any_capsa: Capsa, build_images: BuildImages,
                                        scratch: Path) -> None:
    ref = build_images.ref().removeprefix("docker://")
    definition = _write_def(scratch, f"""\
Bootstrap: docker
From: {ref}

%post
    echo made-in-post > /marker
%runscript
    echo "greeting: $GREETING"
""")
    result = any_capsa("build", "--no-https", "img.sif", str(definition), cwd=scratch,
                       env=_env(scratch))
    assert result.returncode == 0, result
    assert "Fetching OCI image..." in result.stderr
    run = any_capsa("run", "img.sif", cwd=scratch)
    assert run.stdout == "greeting: hello world\n", run
    cat = any_capsa("exec", "img.sif", "cat", "/marker", cwd=scratch)
    assert cat.stdout == "made-in-post\n", cat
    labels = any_capsa("inspect", "--labels", "img.sif", cwd=scratch)
    assert "org.capsa.test: busybox" in labels.stdout, labels
    listing = sif_listing(scratch / "img.sif")
    assert listing["/bin/busybox"] == ("-rwxr-xr-x", "0/0")
    objects = any_capsa("sif", "list", "img.sif", cwd=scratch)
    assert objects.stdout.count("JSON.Generic") == 2, objects  # inspect-metadata, oci-config
    assert listing["/marker"] == ("-rw-r--r--", "0/0")


def test_build_from_uri_and_from_oci_layout(any_capsa: Capsa, build_images: BuildImages,
                                            scratch: Path) -> None:
    result = any_capsa("build", "--no-https", "--disable-cache", "uri.sif", build_images.ref(),
                       cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    out = any_capsa("exec", "uri.sif", "sh", "-c", "echo $GREETING", cwd=scratch)
    assert out.stdout == "hello world\n", out
    layout = any_capsa("build", "-s", "layout", f"oci:{build_images.layout}:latest",
                       cwd=scratch, env=_env(scratch))
    assert layout.returncode == 0, layout
    assert (scratch / "layout/bin/busybox").is_file()


def test_scratch_and_busybox_agents(any_capsa: Capsa, scratch: Path) -> None:
    scratch_def = _write_def(scratch, """\
Bootstrap: scratch

%setup
    mkdir -p "$APPTAINER_ROOTFS/bin"
    touch "$APPTAINER_ROOTFS/setup-ran"

%files
    /bin/busybox /bin/busybox

%runscript
    #!/bin/busybox sh
    echo "scratch image"
""", "scratch.def")
    result = any_capsa("build", "scratch.sif", str(scratch_def), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    run = any_capsa("run", "scratch.sif", cwd=scratch)
    assert run.stdout == "scratch image\n", run
    busybox_def = _write_def(scratch, """\
Bootstrap: busybox

%post
    echo "busybox post" > /post-ran
""", "busybox.def")
    result = any_capsa("build", "-s", "bb", str(busybox_def), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert (scratch / "bb/post-ran").read_text() == "busybox post\n"
    assert (scratch / "setup-ran").exists() is False


def test_multi_stage_files_from(any_capsa: Capsa, build_images: BuildImages,
                                scratch: Path) -> None:
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}
Stage: builder

%post
    mkdir -p /out && echo compiled > /out/artifact

Bootstrap: localimage
From: {build_images.sif}
Stage: final

%files from builder
    /out/artifact /opt/artifact
""")
    result = any_capsa("build", "multi.sif", str(definition), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    cat = any_capsa("exec", "multi.sif", "sh", "-c", "cat /opt/artifact; ls /out || true",
                    cwd=scratch)
    assert cat.stdout.startswith("compiled\n"), cat
    assert "No such file" in cat.stderr or "can't access" in cat.stderr, cat


@pytest.mark.parametrize("sandbox", [False, True], ids=["sif", "sandbox"])
def test_failing_post_leaves_nothing(any_capsa: Capsa, build_images: BuildImages,
                                     scratch: Path, sandbox: bool) -> None:
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}

%post
    echo about to fail
    exit 3
""")
    flags = ["--sandbox"] if sandbox else []
    result = any_capsa("build", *flags, "out", str(definition), cwd=scratch, env=_env(scratch))
    _fatal_only(result)
    assert "exit status 3" in result.stderr
    assert _leftovers(scratch) == ["app.def"]


def test_failing_test_fails_unless_notest(any_capsa: Capsa, build_images: BuildImages,
                                          scratch: Path) -> None:
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}

%test
    echo failing test
    exit 1
""")
    result = any_capsa("build", "out.sif", str(definition), cwd=scratch, env=_env(scratch))
    _fatal_only(result)
    assert _leftovers(scratch) == ["app.def"]
    skipped = any_capsa("build", "--notest", "out.sif", str(definition), cwd=scratch,
                        env=_env(scratch))
    assert skipped.returncode == 0, skipped
    assert any_capsa("test", "out.sif", cwd=scratch).returncode == 1


def test_existing_target(any_capsa: Capsa, build_images: BuildImages, scratch: Path) -> None:
    target = scratch / "out.sif"
    target.write_text("precious")
    any_capsa.user.own(target)  # a sticky scratch: only the owner may replace it
    result = any_capsa("build", "out.sif", str(build_images.sif), cwd=scratch,
                       env=_env(scratch))
    _fatal_only(result)
    assert "build target 'out.sif' already exists. Use --force" in result.stderr
    assert target.read_text() == "precious"
    forced = any_capsa("build", "--force", "out.sif", str(build_images.sif), cwd=scratch,
                       env=_env(scratch))
    assert forced.returncode == 0, forced
    assert target.read_bytes()[32:41] == b"SIF_MAGIC"
    stranger = scratch / "notabox"
    stranger.mkdir()
    (stranger / "file").write_text("x")
    any_capsa.user.own(stranger)
    refused = any_capsa("build", "-s", "notabox", str(build_images.sif), cwd=scratch,
                        env=_env(scratch))
    _fatal_only(refused)
    assert "is not empty and is not an Apptainer sandbox" in refused.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("Bootstrap: docker\nFrom: x\n%bogus\n  x\n", "invalid section(s) specified: bogus"),
    ("Bootstrap: docker\nColour: blue\n", "invalid header keyword found: colour"),
    ("Bootstrap: scratch\n%post\n  echo {{ NOPE }}\n", "build var NOPE is not defined"),
    ("Bootstrap: nosuchagent\n", "invalid build agent"),
    ("Bootstrap: localimage\nFrom: /does/not/exist.sif\n", "unable to find image"),
    ("Bootstrap: scratch\n%files\n  /does/not/exist\n", "no files match"),
    ("Bootstrap: scratch\n%setup\n  exit 4\n", "%setup failed: exit status 4"),
    ("Bootstrap: busybox\n%post\n  exit 5\n", "while running %post: exit status 5"),
])
def test_bad_definitions(capsa: Capsa, scratch: Path, text: str, message: str) -> None:
    definition = _write_def(scratch, text)
    result = capsa("build", "out.sif", str(definition), cwd=scratch, env=_env(scratch))
    _fatal_only(result)
    assert message in result.stderr, result
    assert _leftovers(scratch) == ["app.def"]


def test_unused_build_arg_is_fatal(capsa: Capsa, scratch: Path) -> None:
    definition = _write_def(scratch, "Bootstrap: scratch\n")
    result = capsa("build", "--build-arg", "X=1", "out.sif", str(definition), cwd=scratch,
                   env=_env(scratch))
    _fatal_only(result)
    assert "unused build args: X" in result.stderr


def test_debootstrap_needs_root_or_subordinate_ids(capsa_user: Capsa, scratch: Path) -> None:
    """A root-mapped namespace cannot run dpkg's changes of owner: one FATAL."""
    definition = _write_def(scratch, "Bootstrap: debootstrap\nOSVersion: bookworm\n"
                                     "MirrorURL: http://deb.debian.org/debian\n")
    result = capsa_user("build", "--ignore-subuid", "out.sif", str(definition), cwd=scratch,
                        env=_env(scratch))
    _fatal_only(result)
    assert "must be run as root, or by a user with a range of subordinate ids" in result.stderr
    assert not (scratch / "out.sif").exists()


def test_sif_layout(capsa: Capsa, build_images: BuildImages, scratch: Path) -> None:
    definition = _app_def(scratch, build_images.sif)
    result = capsa("build", "-T", "out.sif", str(definition), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    listing = capsa("sif", "list", "out.sif", cwd=scratch)
    assert listing.returncode == 0, listing
    for kind in ("Def.FILE", "JSON.Generic", "FS"):
        assert kind in listing.stdout, listing
    meta = json.loads(capsa("sif", "dump", "2", "out.sif", cwd=scratch).stdout)
    assert meta["data"]["attributes"]["labels"]["Author"] == "capsa tests"


def test_scif_apps(any_capsa: Capsa, build_images: BuildImages, scratch: Path) -> None:
    data = scratch / "tool.txt"
    data.write_text("tool data\n")
    data.chmod(0o644)
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}

%appfiles tool
    {data} share/tool.txt

%appinstall tool
    echo "installed in $(pwd)" > installed.txt
    printf '#!/bin/sh\\necho tool-binary\\n' > bin/tool-bin
    chmod 755 bin/tool-bin

%appenv tool
    export TOOL_SETTING=on

%apprun tool
    echo "tool app: $TOOL_SETTING $SCIF_APPNAME $*"

%apphelp tool
    Tool help.

%applabels tool
    Purpose testing
""")
    result = any_capsa("build", "apps.sif", str(definition), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    run = any_capsa("run", "--app", "tool", "apps.sif", "x", cwd=scratch)
    assert run.stdout == "tool app: on tool x\n", run
    exe = any_capsa("exec", "--app", "tool", "apps.sif", "sh", "-c",
                    "$SCIF_APPBIN/tool-bin; "
                    "cat $SCIF_APPROOT/installed.txt $SCIF_APPROOT/share/tool.txt",
                    cwd=scratch)
    assert exe.stdout == "tool-binary\ninstalled in /scif/apps/tool\ntool data\n", exe
    helped = any_capsa("run-help", "--app", "tool", "apps.sif", cwd=scratch)
    assert "Tool help." in helped.stdout, helped


def test_files_destination_cannot_escape(capsa: Capsa, build_images: BuildImages,
                                         scratch: Path) -> None:
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}

%files
    /etc/hostname ../../../escaped
""")
    result = capsa("build", "-s", "box", str(definition), cwd=scratch, env=_env(scratch))
    _fatal_only(result)
    assert "leaves the container" in result.stderr
    assert _leftovers(scratch) == ["app.def"]


@pytest.mark.needs_gpu
def test_nv_reaches_test_on_a_real_gpu(any_capsa: Capsa, build_images: BuildImages,
                                       scratch: Path) -> None:
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}

%test
    ls /.singularity.d/libs | grep libnvidia-ml
""")
    result = any_capsa("build", "--nv", "gpu.sif", str(definition), cwd=scratch,
                       env=_env(scratch))
    assert result.returncode == 0, result
    assert "libnvidia-ml" in result.stdout, result


def test_update_existing_sandbox(any_capsa: Capsa, build_images: BuildImages,
                                 scratch: Path) -> None:
    first = any_capsa("build", "-s", "box", str(build_images.sif), cwd=scratch,
                      env=_env(scratch))
    assert first.returncode == 0, first
    definition = _write_def(scratch, """\
Bootstrap: docker
From: never/pulled

%post
    echo second > /second
%runscript
    echo updated
""")
    result = any_capsa("build", "--sandbox", "--update", "box", str(definition), cwd=scratch,
                       env=_env(scratch))
    assert result.returncode == 0, result
    assert "Fetching" not in result.stderr
    assert (scratch / "box/second").read_text() == "second\n"
    assert (scratch / "box/bin/busybox").is_file()
    assert any_capsa("run", "box", cwd=scratch).stdout == "updated\n"
    history = scratch / "box/.singularity.d/bootstrap_history"
    assert history.is_dir() and os.listdir(history)
    missing = any_capsa("build", "-s", "-u", "nothere", str(definition), cwd=scratch,
                        env=_env(scratch))
    _fatal_only(missing)
    assert "could not update sandbox" in missing.stderr


def test_sigterm_removes_the_temporary_sandbox(capsa: Capsa, build_images: BuildImages,
                                               scratch: Path) -> None:
    import signal
    import subprocess
    import time

    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}

%post
    touch /started
    exec sleep 60
""")
    proc = subprocess.Popen(capsa.argv("build", "-s", "box", str(definition)), cwd=scratch,
                            env=capsa.full_env(_env(scratch)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(scratch.glob(".box.build-*/started")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert _leftovers(scratch) == ["app.def"]


def test_hostile_base_cannot_write_outside(capsa: Capsa, build_images: BuildImages,
                                           scratch: Path) -> None:
    import shutil

    victim = scratch / "victim"
    victim.mkdir()
    base = scratch / "base"
    shutil.copytree(build_images.sandbox, base, symlinks=True)
    shutil.rmtree(base / ".singularity.d")
    (base / ".singularity.d").symlink_to(victim)
    (base / ".post.script").symlink_to(victim / "post-target")
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {base}

%post
    echo hi
%runscript
    echo pwned
""")
    result = capsa("build", "out.sif", str(definition), cwd=scratch, env=_env(scratch))
    _fatal_only(result)
    assert "outside the container" in result.stderr
    assert list(victim.iterdir()) == []
    assert _leftovers(scratch) == ["app.def", "base", "victim"]


def test_base_with_absolute_symlinks_builds(capsa: Capsa, build_images: BuildImages,
                                            scratch: Path) -> None:
    import shutil

    base = scratch / "base"
    shutil.copytree(build_images.sandbox, base, symlinks=True)
    (base / "etc/resolv.conf").unlink()
    (base / "etc/resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {base}

%post
    echo fine > /fine
""")
    result = capsa("build", "-s", "box", str(definition), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert (scratch / "box/fine").read_text() == "fine\n"
    assert os.readlink(scratch / "box/etc/resolv.conf") == "/run/systemd/resolve/stub-resolv.conf"


def test_fingerprints_need_signatures(capsa: Capsa, build_images: BuildImages,
                                      scratch: Path) -> None:
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}
Fingerprints: 0123456789ABCDEF0123456789ABCDEF01234567
""")
    result = capsa("build", "out.sif", str(definition), cwd=scratch, env=_env(scratch))
    _fatal_only(result)
    assert "while checking fingerprints" in result.stderr or "not signed" in result.stderr
    assert _leftovers(scratch) == ["app.def"]


@pytest.mark.needs_shared
def test_fingerprints_of_a_signed_base(capsa: Capsa, build_images: BuildImages,
                                       scratch: Path, interop: Path) -> None:
    import shutil

    env = {**_env(scratch), "APPTAINER_KEYSDIR": str(scratch / "keys")}
    imported = capsa("key", "import", str(interop / "keys/private.asc"), env=env)
    assert imported.returncode == 0, imported
    fingerprint = imported.stdout.split("fingerprint ")[1].split()[0]
    base = scratch / "signed.sif"
    shutil.copyfile(build_images.sif, base)
    signed = capsa("sign", str(base), env=env)
    assert signed.returncode == 0, signed
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {base}
Fingerprints: {fingerprint}
""")
    result = capsa("build", "out.sif", str(definition), cwd=scratch, env=env)
    assert result.returncode == 0, result
    other = _write_def(scratch, f"Bootstrap: localimage\nFrom: {base}\n"
                                f"Fingerprints: {'0' * 40}\n", "other.def")
    refused = capsa("build", "other.sif", str(other), cwd=scratch, env=env)
    _fatal_only(refused)
    assert "not signed by the required key(s)" in refused.stderr


def test_oci_archive_keeps_owners_and_setuid_bits(
        any_capsa: Capsa, build_images: BuildImages, scratch: Path) -> None:
    """As root, and as a user with subordinate ids (the build runs as root of
    a user namespace over them): the image's owners and modes survive."""
    definition = _write_def(scratch, f"""\
Bootstrap: oci-archive
From: {build_images.tricky_archive}

%post
    echo post > /data/from-post
""")
    result = any_capsa("build", "tricky.sif", str(definition), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    listing = sif_listing(scratch / "tricky.sif")
    assert "/data/gone.txt" not in listing and "/data/new.txt" in listing
    assert listing["/data/from-post"][1] == "0/0"
    assert listing["/data/user1000.txt"][1] == "1000/1000"
    assert listing["/data/setuid"][0] == "-rwsr-xr-x"
    assert listing["/data/fifo"][0].startswith("p")


def test_update_only_some_sections(capsa: Capsa, build_images: BuildImages,
                                   scratch: Path) -> None:
    first = capsa("build", "-s", "box", str(build_images.sif), cwd=scratch, env=_env(scratch))
    assert first.returncode == 0, first
    definition = _write_def(scratch, """\
Bootstrap: localimage
From: unused

%post
    touch /post-ran
%environment
    export SECTION_ONLY=yes
""")
    result = capsa("build", "-s", "-u", "--section", "environment", "box", str(definition),
                   cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert not (scratch / "box/post-ran").exists()
    out = capsa("exec", "box", "sh", "-c", "echo $SECTION_ONLY", cwd=scratch)
    assert out.stdout == "yes\n", out
    bad = capsa("build", "-s", "-u", "--section", "nonsense", "box", str(definition),
                cwd=scratch, env=_env(scratch))
    _fatal_only(bad)


@pytest.mark.slow
@pytest.mark.needs_root
def test_debootstrap_as_root(capsa: Capsa, scratch: Path) -> None:
    from support.ocibuild import apt_mirror

    try:
        mirror = apt_mirror()
    except RuntimeError as err:
        pytest.skip(str(err))
    definition = _write_def(scratch, f"""\
Bootstrap: debootstrap
OSVersion: bookworm
MirrorURL: {mirror}

%post
    echo "debian post" > /post-ran
%runscript
    head -1 /etc/os-release
""")
    result = capsa("build", "deb.sif", str(definition), cwd=scratch, env=_env(scratch),
                   timeout=600)
    assert result.returncode == 0, result
    run = capsa("run", "deb.sif", cwd=scratch)
    assert run.stdout == 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', run
    assert capsa("exec", "deb.sif", "cat", "/post-ran", cwd=scratch).stdout == "debian post\n"


def _nv_definition(scratch: Path, base: Path) -> Path:
    return _write_def(scratch, f"""\
Bootstrap: localimage
From: {base}

%post
    ls /.singularity.d/libs > /libs-seen-in-post

%test
    test -e /.singularity.d/libs/libcuda.so.1
""")


def test_nv_reaches_test_with_a_fake_driver(any_capsa: Capsa, build_images: BuildImages,
                                            build_fake_gpu: Any, scratch: Path) -> None:
    definition = _nv_definition(scratch, build_images.sif)
    env = {**_env(scratch), **build_fake_gpu.environ()}
    result = any_capsa("build", "--nv", "-s", "gpu", str(definition), cwd=scratch, env=env)
    assert result.returncode == 0, result
    assert "Running testscript" in result.stderr
    # the driver was bound, not copied: nothing of it stays in the image
    assert os.listdir(scratch / "gpu/.singularity.d/libs") == []
    without = any_capsa("build", "-s", "nogpu", str(definition), cwd=scratch, env=env)
    _fatal_only(without)
    assert "testscript failed" in without.stderr


def test_nv_reaches_post_with_a_fake_driver(capsa: Capsa, build_images: BuildImages,
                                            build_fake_gpu: Any, scratch: Path) -> None:
    definition = _nv_definition(scratch, build_images.sif)
    env = {**_env(scratch), **build_fake_gpu.environ()}
    result = capsa("build", "--nv", "-T", "-s", "gpu", str(definition), cwd=scratch, env=env)
    assert result.returncode == 0, result
    assert "libcuda.so.1" in (scratch / "gpu/libs-seen-in-post").read_text(), result


def test_build_arg_file(capsa: Capsa, build_images: BuildImages, scratch: Path) -> None:
    args = scratch / "args.env"
    args.write_text("# comment\nWHO=from-file\nWHAT=overridden\n")
    definition = _write_def(scratch, f"""\
Bootstrap: localimage
From: {build_images.sif}

%runscript
    echo "{{{{ WHO }}}} {{{{ WHAT }}}}"
""")
    result = capsa("build", "--build-arg-file", str(args), "--build-arg", "WHAT=cli",
                   "args.sif", str(definition), cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert capsa("run", "args.sif", cwd=scratch).stdout == "from-file cli\n"


def test_build_from_oras(capsa: Capsa, build_images: BuildImages, scratch: Path) -> None:
    ref = build_images.ref("test/busybox-sif:latest").replace("docker://", "oras://")
    pushed = capsa("push", "--no-https", str(build_images.sif), ref, cwd=scratch)
    assert pushed.returncode == 0, pushed
    result = capsa("build", "--no-https", "-s", "box", ref, cwd=scratch, env=_env(scratch))
    assert result.returncode == 0, result
    assert (scratch / "box/bin/busybox").is_file()
    definition = _write_def(scratch, f"Bootstrap: oras\nFrom: {ref.removeprefix('oras://')}\n"
                                     "%post\n    touch /oras-post\n")
    built = capsa("build", "--no-https", "oras.sif", str(definition), cwd=scratch,
                  env=_env(scratch))
    assert built.returncode == 0, built
    assert capsa("exec", "oras.sif", "ls", "/oras-post", cwd=scratch).returncode == 0
