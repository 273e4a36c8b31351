"""A parsed definition file, as plain frozen data (no I/O, no behaviour
beyond lookups).

A :class:`Definition` is one or more :class:`Stage` objects, each started by
a ``Bootstrap:`` header; the last stage is the image that gets built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Sections a stage may hold besides %files and the SCIF app sections.
SCRIPT_SECTIONS = ("help", "setup", "labels", "environment", "pre", "post", "runscript",
                   "test", "startscript", "arguments")
APP_SECTIONS = ("appinstall", "applabels", "appfiles", "appenv", "apptest", "apphelp",
                "apprun", "appstart")
HEADER_KEYS = ("bootstrap", "from", "includecmd", "mirrorurl", "updateurl", "osversion",
               "include", "library", "registry", "namespace", "stage", "product", "user",
               "regcode", "productpgp", "registerurl", "modules", "fingerprints", "confurl",
               "setopt")


@dataclass(frozen=True, slots=True)
class Script:
    """A section's body and the words after its name (``%post -c /bin/bash``)."""

    body: str = ""
    args: str = ""


@dataclass(frozen=True, slots=True)
class FileCopy:
    """One ``%files`` line: ``src [dst]`` (an empty *dst* means the same path)."""

    src: str
    dst: str = ""


@dataclass(frozen=True, slots=True)
class FilesSection:
    """A ``%files [from STAGE]`` section."""

    args: str = ""
    copies: tuple[FileCopy, ...] = ()

    @property
    def from_stage(self) -> str | None:
        words = self.args.split()
        if len(words) == 2 and words[0].lower() == "from":
            return words[1]
        return None


@dataclass(frozen=True, slots=True)
class App:
    """The SCIF app sections of one app, by section name (``appinstall``...)."""

    name: str
    sections: tuple[tuple[str, Script], ...] = ()

    def script(self, section: str) -> Script:
        return dict(self.sections).get(section, Script())


@dataclass(frozen=True, slots=True)
class Stage:
    """One ``Bootstrap:`` block of a definition file."""

    header: tuple[tuple[str, str], ...] = ()          # lower-case keys, file order
    scripts: tuple[tuple[str, Script], ...] = ()      # SCRIPT_SECTIONS present
    labels: tuple[tuple[str, str], ...] = ()          # %labels, file order
    files: tuple[FilesSection, ...] = ()
    apps: tuple[App, ...] = ()
    raw: str = ""                                     # this stage's text

    def get(self, key: str, default: str = "") -> str:
        """A header value by (case-insensitive) key."""
        return dict(self.header).get(key.lower(), default)

    def script(self, section: str) -> Script:
        return dict(self.scripts).get(section, Script())

    @property
    def bootstrap(self) -> str:
        return self.get("bootstrap").lower()

    @property
    def name(self) -> str:
        return self.get("stage")


@dataclass(frozen=True, slots=True)
class Definition:
    """All stages of a definition file, after ``{{ arg }}`` substitution."""

    stages: tuple[Stage, ...]
    raw: str = ""                                  # the text as written (before substitution)
    text: str = ""                                 # the text after substitution
    used_args: frozenset[str] = field(default_factory=frozenset)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_named(self, name: str) -> Stage | None:
        for stage in self.stages:
            if stage.name == name:
                return stage
        return None
