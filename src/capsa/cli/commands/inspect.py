"""``capsa inspect``: show an image's labels, scripts, environment and help.

The output follows Apptainer's: plain sections by default, or with
``--json`` one document ``{"data": {"attributes": {...}}, "type":
"container"}`` indented with tabs (the shape spython parses).
"""

from __future__ import annotations

import argparse
import json
import sys

from capsa import report
from capsa.runtime.metadata import app_names as _app_names
from capsa.runtime.metadata import is_env_file as _is_env_file
from capsa.runtime.metadata import labels_of as _labels

HELP = "Show metadata for an image"

log = report.getLogger("capsa.cli.inspect")

_SECTIONS = ("labels", "deffile", "helpfile", "runscript", "startscript", "test",
             "environment", "list_apps")


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-l", "--labels", action="store_true", help="show the labels (default)")
    add("-d", "--deffile", action="store_true", help="show the definition file")
    add("-r", "--runscript", action="store_true", help="show the runscript")
    add("-s", "--startscript", action="store_true", help="show the startscript")
    add("-t", "--test", action="store_true", help="show the test script")
    add("-e", "--environment", action="store_true", help="show the environment settings")
    add("-H", "--helpfile", action="store_true", help="show the runscript help")
    add("-j", "--json", action="store_true", help="print structured JSON")
    add("--all", action="store_true", help="show all available data (implies --json)")
    add("--list-apps", action="store_true", help="list the apps in the container")
    add("--app", metavar="NAME", default="", help="inspect one app")
    add("image", help="SIF file or sandbox directory")


def run(args: argparse.Namespace) -> int:
    from capsa.runtime import image
    from capsa.runtime.metadata import read_metadata, sif_deffile

    if args.all:
        args.json, args.app = True, ""
    if not any(getattr(args, name) for name in _SECTIONS if name != "labels"):
        args.labels = True
    spec = image.resolve(args.image)
    files = read_metadata(spec, mount=args.site.fuse)
    deffile = sif_deffile(spec.path, spec.fd) if spec.kind == "squashfs" else None
    attributes = build_attributes(args, files, deffile)
    if args.json:
        sys.stdout.write(to_json(attributes))
    else:
        sys.stdout.write(to_text(attributes, args.app, args.list_apps))
    return 0


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\n")


def build_attributes(args: argparse.Namespace, files: dict[str, bytes],
                     sif_deffile: str | None) -> dict[str, object]:
    """Apptainer's attribute map for the sections asked for."""
    every = bool(args.all)
    prefixes = ["/.singularity.d"] if not args.app else [f"/scif/apps/{args.app}/scif"]
    if every:
        prefixes += [f"/scif/apps/{a}/scif" for a in _app_names(files)]
    attrs: dict[str, object] = {}
    apps: dict[str, dict[str, object]] = {}

    def put(key: str, value: object, prefix: str) -> None:
        if prefix.startswith("/scif/apps/"):
            apps.setdefault(prefix.split("/")[3], {})[key] = value
        else:
            attrs[key] = value

    for prefix in prefixes:
        if args.labels or every:
            raw = files.get(f"{prefix}/labels.json")
            if raw is not None or prefix == prefixes[0]:
                put("labels", _labels(raw), prefix)
        for flag, name, key in (("helpfile", "runscript.help", "helpfile"),
                                ("runscript", "runscript", "runscript"),
                                ("startscript", "startscript", "startscript"),
                                ("test", "test", "test")):
            raw = files.get(f"{prefix}/{name}")
            if (getattr(args, flag) or every) and raw is not None:
                put(key, _text(raw), prefix)
        if args.environment or every:
            env = {p: _text(v) for p, v in sorted(files.items())
                   if p.startswith(f"{prefix}/env/") and _is_env_file(p, prefix)}
            if env:
                put("environment", env, prefix)
    if (args.deffile or every) and not args.app:
        text = sif_deffile
        if text is None:
            raw = files.get("/.singularity.d/Singularity", files.get("/.singularity.d/Apptainer"))
            text = raw.decode("utf-8", errors="replace") if raw is not None else None
        if text:
            attrs["deffile"] = text.rstrip("\n")
    if args.list_apps or every:
        for name in _app_names(files):
            apps.setdefault(name, {})
    if apps:
        attrs["apps"] = apps
    return attrs


_ORDER = ("apps", "labels", "deffile", "runscript", "startscript", "test", "helpfile",
          "environment")


def to_json(attrs: dict[str, object]) -> str:
    ordered = {k: attrs[k] for k in _ORDER if k in attrs}
    text = json.dumps({"data": {"attributes": ordered}, "type": "container"},
                      indent="\t", ensure_ascii=False)
    # Go's encoder escapes these, and clients compare byte for byte.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text + "\n"


def to_text(attrs: dict[str, object], app: str, list_apps: bool) -> str:
    out: list[str] = []
    apps = attrs.get("apps")
    app_attrs: dict[str, object] = {}
    if isinstance(apps, dict):
        if list_apps:
            out.extend(f"{name}\n" for name in sorted(apps))
        app_attrs = apps.get(app, {}) if app else {}
    for key in ("deffile", "runscript", "startscript", "test", "helpfile"):
        value = attrs.get(key) or app_attrs.get(key)
        if value:
            out.append(f"{value}\n")
    env = attrs.get("environment") or app_attrs.get("environment")
    if isinstance(env, dict):
        out.extend(f"=== {k} ===\n{env[k]}\n\n" for k in sorted(env))
    labels = attrs.get("labels") or app_attrs.get("labels")
    if isinstance(labels, dict):
        out.extend(f"{k}: {labels[k]}\n" for k in sorted(labels))
    return "".join(out)
