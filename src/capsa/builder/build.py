"""The build, stage by stage: bootstrap -> %setup -> %files -> %post ->
metadata (%environment, %runscript, %startscript, %test, %labels, %help,
the definition) -> %test -> squashfs + SIF, or a sandbox directory.

Work happens in temporary directories; the destination appears by rename,
complete, or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from capsa import report, tempdirs
from capsa.builder import agents, apps
from capsa.builder.metadata import write_metadata
from capsa.builder.sandbox import (
    REAL_OWNERS,
    Ownership,
    confined,
    fix_permissions,
    pack_squashfs,
    remove_tree,
)
from capsa.builder.scripts import ContainerOptions, run_post, run_setup, run_test
from capsa.deffile.model import Definition, FileCopy, FilesSection, Stage
from capsa.errors import ContainerError, FormatError, NotFoundError, UsageError
from capsa.jsondoc import load, read_document
from capsa.programs import require
from capsa.pulling import PullOptions
from capsa.scratch import Place, guard, tmpdir_place
from capsa.squashfs import SquashfsOptions

log = report.getLogger("capsa.builder")

ALL_SECTIONS = ("setup", "files", "post", "environment", "runscript", "startscript",
                "test", "labels", "help")


@dataclass(frozen=True, slots=True)
class BuildOptions:
    sandbox: bool = False
    update: bool = False            # run the sections over an existing sandbox
    fix_perms: bool = False         # --fix-perms after the bootstrap
    notest: bool = False
    sections: frozenset[str] = frozenset(("all",))
    container: ContainerOptions = field(default_factory=ContainerOptions)
    pull: PullOptions = field(default_factory=PullOptions)
    squashfs: SquashfsOptions = field(default_factory=SquashfsOptions)
    arch: str = ""                  # GOARCH recorded in the SIF; "" = this host's
    tmpdir: Path = Path("/tmp")
    ownership: Ownership = REAL_OWNERS
    # SOURCE_DATE_EPOCH: the same definition from the same base digest with a
    # deterministic %post gives a byte-identical SIF (times clamped to it).
    epoch: int | None = None
    # (key, done, total) while packing, as PullOptions.progress (a terminal's bar)
    progress: Callable[[str, int, int], None] | None = None

    def wants(self, section: str) -> bool:
        return "all" in self.sections or section in self.sections


def build(definition: Definition, dest: Path, options: BuildOptions) -> None:
    """Build *definition* into *dest* (a SIF file, or a directory with
    ``options.sandbox``), replacing what is there."""
    log.info("Starting build...")
    if not options.container.fakeroot and os.geteuid() != 0 and _runs_in_container(
            definition, options):
        log.info("The %post section will be run under fakeroot")
    if options.update:
        _update_sandbox(definition, dest, options)
        log.info("Build complete: %s", dest)
        return
    with _workdir(options.tmpdir) as work:
        options = _with_fakeroot_database(options, work)
        rootfs = _final_rootfs(dest, work, options)
        try:
            with guard(*_scratch_places(dest, options), check_full=True):
                base = _build_stages(definition, rootfs, work, options)
                if options.sandbox:
                    _install_sandbox(rootfs, dest)
                else:
                    _write_sif(definition, rootfs, dest, work, options, base.oci_config)
        finally:
            remove_tree(rootfs)
    log.info("Build complete: %s", dest)


def _update_sandbox(definition: Definition, dest: Path, options: BuildOptions) -> None:
    """``--update``: the sections run over an existing sandbox, in place
    (as Apptainer does: no bootstrap, nothing atomic about it)."""
    if not dest.is_dir():
        raise NotFoundError(f"could not update sandbox {dest}: doesn't exist")
    log.info("Building into existing container: %s", dest)
    with _workdir(options.tmpdir) as work, guard(*_scratch_places(dest, options),
                                                 check_full=True):
        options = _with_fakeroot_database(options, work)
        _build_stages(definition, dest, work, options, update=True)


def _with_fakeroot_database(options: BuildOptions, work: Path) -> BuildOptions:
    """In a root-mapped namespace, one fakeroot(1) database for the whole
    build: unsquashfs records the base's owners in it, %post changes them,
    tar reads them back for the image."""
    if options.ownership.kind != "fakeroot":
        return options
    state = work / "fakeroot.db"
    state.touch(0o600)  # %post binds it in, whether or not a base was unpacked
    return dataclasses.replace(
        options, ownership=dataclasses.replace(options.ownership, state=state),
        container=dataclasses.replace(options.container, fakeroot_state=str(state)))


def _scratch_places(dest: Path, options: BuildOptions) -> list[Place]:
    """Where a build writes while it works: the temporary directory, and
    beside a sandbox destination (the sandbox is built there)."""
    places = [tmpdir_place(options.tmpdir)]
    if options.sandbox or options.update:
        places.append(Place(str(dest.absolute().parent)))
    return places


def _runs_in_container(definition: Definition, options: BuildOptions) -> bool:
    final = definition.final
    return any(stage.script("post").body.strip() for stage in definition.stages) or (
        not options.notest and bool(final.script("test").body.strip()))


@contextlib.contextmanager
def _workdir(tmpdir: Path) -> Iterator[Path]:
    """The build's scratch directory, removed on every exit we see; what
    killed runs left in *tmpdir* goes first (:mod:`capsa.scratch`)."""
    try:
        tmpdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"temporary directory {tmpdir} is unusable: {err.strerror}") from err
    tempdirs.sweep(str(tmpdir))
    path, lock = tempdirs.make_dir(str(tmpdir), "capsa-build-")
    try:
        yield Path(path)
    finally:
        remove_tree(Path(path))
        os.close(lock)


def _final_rootfs(dest: Path, work: Path, options: BuildOptions) -> Path:
    """Where the last stage is built: beside a sandbox destination (so that
    it can be renamed into place), in the work directory otherwise."""
    if not options.sandbox:
        path = work / "rootfs"
        path.mkdir()
        return path
    parent = dest.absolute().parent
    try:
        path = Path(tempfile.mkdtemp(prefix=f".{dest.name}.build-", dir=parent))
    except OSError as err:
        raise UsageError(f"cannot create the sandbox beside {dest}: {err.strerror}") from err
    path.chmod(0o755)
    return path


def _build_stages(definition: Definition, final_rootfs: Path, work: Path,
                  options: BuildOptions, *, update: bool = False) -> agents.Base:
    """Every stage in order; the base of the last one."""
    roots: dict[str, Path] = {}
    base = agents.Base()
    count = len(definition.stages)
    for index, stage in enumerate(definition.stages):
        last = index == count - 1
        rootfs = final_rootfs if last else work / f"stage-{index}"
        rootfs.mkdir(exist_ok=True)
        if count > 1:
            log.info("Build stage %s", stage.name or index + 1)
        base = _build_stage(definition, stage, rootfs, roots, work, options,
                            skip_bootstrap=update and last)
        if stage.name:
            roots[stage.name] = rootfs
    if not options.notest and options.wants("test") and definition.final.script(
            "test").body.strip():
        run_test(final_rootfs, options.container)
    return base


def _build_stage(definition: Definition, stage: Stage, rootfs: Path, roots: dict[str, Path],
                 work: Path, options: BuildOptions, *, skip_bootstrap: bool = False
                 ) -> agents.Base:
    if skip_bootstrap:
        base = agents.Base(name=str(rootfs), has_metadata=True)
    else:
        stage_work = Path(tempfile.mkdtemp(prefix="agent-", dir=work))
        context = agents.AgentContext(stage_work, options.pull, options.container.runner,
                                      options.ownership)
        base = agents.bootstrap(stage, rootfs, context)
        if options.fix_perms:
            fix_permissions(rootfs)
    write_metadata(stage, rootfs, base, definition, phase="base", arch=_arch(options),
                   epoch=options.epoch)
    if options.wants("setup") and stage.script("setup").body.strip():
        run_setup(stage.script("setup"), rootfs, options.container.runner)
    if options.wants("files"):
        for section in stage.files:
            _copy_section(section, rootfs, roots, options)
    for app in stage.apps:
        apps.lay_out(app, rootfs, functools.partial(_copy_files, source_root=None,
                                                    options=options))
    if options.wants("post") and stage.script("post").body.strip():
        try:
            run_post(stage.script("post"), rootfs, options.container)
        except ContainerError:
            _explain_faked_ids(options.ownership)
            raise
    for app in stage.apps:
        apps.install(app, rootfs, options.container)
        apps.write_metadata(app, rootfs)
    write_metadata(stage, rootfs, base, definition, phase="final", arch=_arch(options),
                   sections=options.sections, epoch=options.epoch)
    return base


def _explain_faked_ids(ownership: Ownership) -> None:
    """Why a %post may fail in a root-mapped namespace, and what to do."""
    if ownership.kind == "real":
        return
    how = ("fakeroot(1) fakes changes of owner, which statically linked programs and "
           "some package scripts bypass" if ownership.kind == "fakeroot" else
           "no fakeroot command was found, so no file can change owner")
    log.warning("%%post ran as root of a root-mapped user namespace (no subordinate ids in "
                "/etc/subuid and /etc/subgid for this user): %s. Ask your administrator "
                "for a range in /etc/subuid and /etc/subgid (or build as root).", how)


def _arch(options: BuildOptions) -> str:
    from capsa.sif import host_goarch

    return options.arch or host_goarch()


def _copy_section(section: FilesSection, rootfs: Path, roots: dict[str, Path],
                  options: BuildOptions) -> None:
    source_stage = section.from_stage
    source_root = roots.get(source_stage) if source_stage else None
    if source_stage and source_root is None:
        raise NotFoundError(f"%files from {source_stage}: stage {source_stage} was not found")
    _copy_files(section.copies, rootfs, source_root=source_root, options=options)


def _copy_files(copies: tuple[FileCopy, ...], rootfs: Path, *, source_root: Path | None,
                options: BuildOptions) -> None:
    for copy in copies:
        pattern = str(confined(source_root, copy.src)) if source_root else copy.src
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise NotFoundError(f"While performing build: while copying files: no files "
                                f"match {copy.src}")
        destination = copy.dst or copy.src
        target = confined(rootfs, destination)
        log.info("Copying %s to %s", copy.src, destination)
        _cp(matches, target, follow=source_root is None, options=options)


def _cp(sources: list[str], target: Path, *, follow: bool, options: BuildOptions) -> None:
    """``cp -Lr`` from the host (symlinks followed), ``cp -Pr`` from a stage;
    an existing destination file (or symlink) is replaced, never written through."""
    if len(sources) > 1 or str(target).endswith("/"):
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    flags = "-Lr" if follow else "-Pr"
    options.container.runner.run([require("cp"), flags, "--remove-destination", *sources,
                                  str(target)])


def _install_sandbox(rootfs: Path, dest: Path) -> None:
    log.info("Creating sandbox directory...")
    trash = None
    if os.path.lexists(dest):
        trash = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.rename(dest, trash)
    os.rename(rootfs, dest)
    if trash is not None:
        remove_tree(trash)


def _write_sif(definition: Definition, rootfs: Path, dest: Path, work: Path,
               options: BuildOptions, oci_config: bytes = b"") -> None:
    from capsa.sif import DataType, FSType, NewObject, PartType, create, sif_arch

    log.info("Creating SIF file...")
    squashfs = work / "rootfs.sqfs"
    pack_squashfs(rootfs, squashfs, options.squashfs, options.container.runner,
                  options.ownership, epoch=options.epoch,
                  progress=_squashfs_progress(options))
    if options.progress is not None:
        options.progress("packed", 0, 0)
    arch = _arch(options)
    objects = [
        NewObject(DataType.DEFFILE, data=(definition.text or definition.raw).encode()),
        NewObject(DataType.GENERIC_JSON, data=_inspect_metadata(rootfs, options.epoch),
                  name="inspect-metadata.json"),
        *([NewObject(DataType.GENERIC_JSON, data=oci_config, name="oci-config.json")]
          if oci_config else []),
        NewObject(DataType.PARTITION, path=str(squashfs), fs_type=FSType.SQUASHFS,
                  part_type=PartType.PRIMSYS, arch=sif_arch(arch)),
    ]
    with guard(Place(str(dest.absolute().parent))):
        if dest.is_dir() and not dest.is_symlink():
            temporary = dest.with_name(f".{dest.name}.build-{os.getpid()}.sif")
            create(temporary, objects, deterministic=options.epoch is not None)
            remove_tree(dest)
            os.replace(temporary, dest)
        else:
            create(dest, objects, deterministic=options.epoch is not None)
    with contextlib.suppress(OSError):
        os.chmod(dest, 0o755 & ~_umask())


def _squashfs_progress(options: BuildOptions) -> Callable[[int, int], None] | None:
    report = options.progress
    if report is None:
        return None
    return lambda done, total: report("squashfs", done, total)


def _inspect_metadata(rootfs: Path, epoch: int | None) -> bytes:
    """The ``inspect-metadata.json`` object: labels, deffile, scripts."""
    meta = rootfs / ".singularity.d"

    def read(name: str) -> str:
        try:
            return (meta / name).read_text(errors="replace")
        except OSError:
            return ""

    try:
        labels = load(read("labels.json") or "{}", "labels.json")
    except FormatError:
        labels = {}
    attributes = {"labels": labels, "deffile": read("Singularity"),
                  "runscript": read("runscript"), "test": read("test"),
                  "helpfile": read("runscript.help"), "startscript": read("startscript"),
                  "environment": {"/.singularity.d/env/90-environment.sh":
                                  read("env/90-environment.sh")}}
    data = {"type": "container", "data": {"attributes": attributes},
            "created": int(time.time()) if epoch is None else epoch}
    return json.dumps(data).encode()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MAX_DEFINITION = 16 << 20


def copy_definition_text(source: Path) -> str:
    """Read a definition file (a clear error if unreadable or binary)."""
    try:
        data = read_document(source, "definition file", _MAX_DEFINITION)
    except OSError as err:
        raise NotFoundError(f"unable to read definition file {source}: {err.strerror}") from err
    except FormatError as err:  # a FIFO, a device: refused without blocking
        raise UsageError(f"unable to read {err}") from None
    if len(data) > _MAX_DEFINITION:
        raise UsageError(f"definition file {source} is larger than {_MAX_DEFINITION} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError as err:
        raise UsageError(f"{source} is not a definition file (not UTF-8 text)") from err
