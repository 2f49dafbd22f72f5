"""Runtime support for the generated Kafka message classes (`messages.py`).

Each generated class lists its fields in `FIELDS`, a tuple of `Field` rows that the codec
(`codec.py`) compiles into per-(class, version) encode/decode functions. Version ranges are
inclusive `(low, high)` tuples; an open range ("3+") has `high == MAX_VERSION`, and "none" is
`NO_VERSIONS`, a range that contains nothing.
"""

from __future__ import annotations

import uuid
from operator import attrgetter
from typing import Any, NamedTuple

MAX_VERSION = 0x7FFF
NO_VERSIONS = (0, -1)
ZERO_UUID = uuid.UUID(int=0)


class _Default:
    """Keyword default meaning "a fresh empty list" (arrays) or "a fresh instance" (structs)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


class Field(NamedTuple):
    name: str  # snake_case attribute name
    type: str  # the spec's type: int8..int64, uint16, uint32, float64, bool, string, bytes,
    # records, uuid, a struct name, or "[]" + one of these
    versions: tuple[int, int]
    nullable: tuple[int, int] | None = None
    tagged: tuple[int, int] | None = None
    tag: int | None = None
    ignorable: bool = False
    # Python default; None when the spec default is "null"; DEFAULT for a fresh list/struct.
    default: Any = None
    struct: type[Message] | None = None  # element/struct class for struct and []struct types
    flexible: tuple[int, int] | None = None  # field-level override of the message's flexibleVersions


class ApiMessages(NamedTuple):
    name: str
    api_key: int
    request: type[Message]
    response: type[Message]
    min_version: int
    max_version: int
    flexible_min: int | None  # first flexible version, None if no version is flexible


def _short(value: Any) -> str:
    if isinstance(value, memoryview):
        return f"<memoryview {value.nbytes} bytes>"
    if isinstance(value, (bytes, bytearray)) and len(value) > 64:
        return f"<{len(value)} bytes>"
    return repr(value)


class Message:
    """Base of every generated message and nested struct: repr, equality, field tables."""

    __slots__ = ()
    FIELDS: tuple[Field, ...] = ()
    NAME = ""
    API_KEY: int | None = None
    VERSIONS = (0, 0)  # valid versions of a top-level message; nested structs use their parent's
    FLEXIBLE_MIN: int | None = None
    _values: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = cls.__slots__
        if len(slots) == 0:
            cls._values = staticmethod(lambda _obj: ())
        elif len(slots) == 1:
            getter = attrgetter(slots[0])
            cls._values = staticmethod(lambda obj: (getter(obj),))
        else:
            cls._values = staticmethod(attrgetter(*slots))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values(self) == self._values(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={_short(getattr(self, n))}" for n in self.__slots__)
        return f"{type(self).__qualname__}({inner})"
