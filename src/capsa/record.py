"""``Record``: ``typing.NamedTuple`` for the exec path, without its import cost.

A class written ``class Spec(Record): path: str; size: int = 0`` is, for
mypy, exactly a ``typing.NamedTuple`` (the name is that class while type
checking) and, at run time, the same ``collections.namedtuple`` that
``typing.NamedTuple`` would make, with the class body's methods, properties
and docstring on it.  What is skipped is ``typing``'s check of every
annotation: under ``from __future__ import annotations`` each one is a
string that ``typing`` compiles into a ``ForwardRef`` (about 0.25 ms a
class, 6 ms of every ``capsa exec`` for the two dozen records it defines).
The annotations are kept as written, in ``__annotations__``.

Instances pickle (the launcher's child gets its spec that way), compare and
``_replace`` as named tuples do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    from collections import namedtuple

    _NOT_COPIED = frozenset(("__annotations__", "__module__", "__qualname__"))

    class _RecordType(type):
        def __new__(mcs, name: str, bases: tuple[type, ...],
                    namespace: dict[str, Any]) -> type:
            if not bases:  # Record itself
                return super().__new__(mcs, name, bases, namespace)
            annotations: dict[str, str] = namespace.get("__annotations__", {})
            fields = list(annotations)
            defaults = [namespace[field] for field in fields if field in namespace]
            record = namedtuple(name, fields, defaults=defaults,  # type: ignore[misc]
                                module=namespace["__module__"])
            record.__qualname__ = namespace["__qualname__"]
            record.__annotations__ = dict(annotations)
            for key, value in namespace.items():
                if key not in fields and key not in _NOT_COPIED:
                    setattr(record, key, value)
            return record

    class Record(metaclass=_RecordType):
        """The base of records (see the module's description)."""


__all__ = ["Record"]
