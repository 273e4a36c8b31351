"""SCIF apps (``%appinstall``, ``%appfiles``, ``%appenv``, ``%apprun``,
``%appstart``, ``%apptest``, ``%applabels``, ``%apphelp``): each app lives
in ``/scif/apps/<app>`` with its metadata in ``scif/``, its data in
``/scif/data/<app>``, as the runtime's ``95-apps.sh`` expects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from capsa import report
from capsa.builder.metadata import with_shebang, write_file
from capsa.builder.sandbox import confined
from capsa.builder.scripts import ContainerOptions, run_post
from capsa.deffile.model import App, FileCopy
from capsa.deffile.parser import parse_files, parse_labels
from capsa.rootfs.singularity_d import labels_json

log = report.getLogger("capsa.builder")

CopyFiles = Callable[[tuple[FileCopy, ...], Path], None]

_SCRIPTS = (("apprun", "runscript", 0o755), ("appstart", "startscript", 0o755),
            ("apptest", "test", 0o755))


def app_env(name: str) -> dict[str, str]:
    root, data = f"/scif/apps/{name}", f"/scif/data/{name}"
    return {"SCIF_APPNAME": name, "SCIF_APPROOT": root, "SCIF_APPDATA": data,
            "SCIF_APPBIN": f"{root}/bin", "SCIF_APPLIB": f"{root}/lib",
            "SCIF_APPINPUT": f"{data}/input", "SCIF_APPOUTPUT": f"{data}/output",
            "SCIF_APPMETA": f"{root}/scif", "SCIF_APPRUN": f"{root}/scif/runscript"}


def lay_out(app: App, rootfs: Path, copy_files: CopyFiles) -> None:
    """The app's directories, base environment and ``%appfiles``."""
    _check_confined(app, rootfs)
    root = confined(rootfs, f"/scif/apps/{app.name}")
    for sub in ("bin", "lib", "scif/env"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("input", "output"):
        confined(rootfs, f"/scif/data/{app.name}/{sub}").mkdir(parents=True, exist_ok=True)
    base = "".join(f"export {k}={v!s}\n" for k, v in app_env(app.name).items())
    write_file(root / "scif/env/01-base.sh", "#!/bin/sh\n" + base, 0o755)
    copies = parse_files(app.script("appfiles").body)
    if copies:
        log.info("Copying files for app %s", app.name)
        relocated = tuple(FileCopy(c.src, f"/scif/apps/{app.name}/"
                                   f"{(c.dst or Path(c.src).name).lstrip('/')}")
                          for c in copies)
        copy_files(relocated, rootfs)


def install(app: App, rootfs: Path, options: ContainerOptions) -> None:
    """``%appinstall`` in the container, from the app's directory."""
    script = app.script("appinstall")
    if script.body.strip():
        run_post(script, rootfs, options, pwd=f"/scif/apps/{app.name}",
                 env=app_env(app.name), what=f"%appinstall {app.name}")


def write_metadata(app: App, rootfs: Path) -> None:
    _check_confined(app, rootfs)
    meta = confined(rootfs, f"/scif/apps/{app.name}/scif")
    for section, name, mode in _SCRIPTS:
        script = app.script(section)
        if script.body.strip():
            write_file(meta / name, with_shebang(script), mode)
    if app.script("apphelp").body.strip():
        write_file(meta / "runscript.help", app.script("apphelp").body.strip("\n") + "\n", 0o644)
    if app.script("appenv").body.strip():
        write_file(meta / "env/90-environment.sh",
               "#!/bin/sh\n" + app.script("appenv").body.rstrip("\n") + "\n", 0o755)
    labels = dict(parse_labels(app.script("applabels").body))
    write_file(meta / "labels.json", labels_json(labels), 0o644)


def _check_confined(app: App, rootfs: Path) -> None:
    """The app's directories resolve inside the image (whatever the base holds)."""
    if "/" in app.name or app.name in ("", ".", ".."):
        from capsa.errors import FormatError

        raise FormatError(f"invalid app name {app.name!r}")
    for inner in ("scif/env/x", "scif/x", "bin/x", "lib/x"):
        confined(rootfs, f"/scif/apps/{app.name}/{inner}")
    for inner in ("input/x", "output/x"):
        confined(rootfs, f"/scif/data/{app.name}/{inner}")
