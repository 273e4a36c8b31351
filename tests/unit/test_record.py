"""capsa.record: a named tuple made without typing.NamedTuple's cost, same behaviour."""

from __future__ import annotations

import pickle
from typing import NamedTuple

import pytest

from capsa.record import Record


class Mount(Record):
    """Where a file system goes."""

    source: str
    target: str
    options: tuple[str, ...] = ()
    readonly: bool = True

    @property
    def spec(self) -> str:
        return f"{self.source}:{self.target}"

    @classmethod
    def of(cls, text: str) -> Mount:
        source, target = text.split(":")
        return cls(source, target)

    def describe(self) -> str:
        return f"{self.spec} ({'ro' if self.readonly else 'rw'})"


class TypedMount(NamedTuple):
    source: str
    target: str
    options: tuple[str, ...] = ()
    readonly: bool = True


def test_fields_defaults_and_annotations_match_typing_namedtuple() -> None:
    assert Mount._fields == TypedMount._fields
    assert Mount._field_defaults == TypedMount._field_defaults
    assert Mount.__annotations__ == {"source": "str", "target": "str",
                                     "options": "tuple[str, ...]", "readonly": "bool"}
    assert issubclass(Mount, tuple)


def test_identity_of_the_class() -> None:
    assert Mount.__name__ == "Mount"
    assert Mount.__qualname__ == "Mount"
    assert Mount.__module__ == __name__
    assert Mount.__doc__ == "Where a file system goes."


def test_methods_properties_and_classmethods_are_kept() -> None:
    mount = Mount.of("/data:/mnt")
    assert mount == ("/data", "/mnt", (), True)
    assert mount.spec == "/data:/mnt"
    assert mount._replace(readonly=False).describe() == "/data:/mnt (rw)"


def test_immutable_and_pickles() -> None:
    mount = Mount("/a", "/b", ("nosuid",), False)
    with pytest.raises(AttributeError):
        mount.source = "/c"  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(mount))
    assert copy == mount and type(copy) is Mount


def test_missing_field_is_an_error_as_for_any_tuple() -> None:
    with pytest.raises(TypeError):
        Mount("/only-source")  # type: ignore[call-arg]


def test_nested_class_qualname() -> None:
    class Inner(Record):
        value: int = 1

    assert Inner().value == 1
    assert Inner.__qualname__.endswith("<locals>.Inner")
