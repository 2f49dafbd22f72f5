"""Schema-driven sample values for protocol tests: every field present at a version non-default."""

from __future__ import annotations

import uuid
from typing import Any

from appliance.kafka.protocol.schema import DEFAULT, Field, Message

_SAMPLES: dict[str, Any] = {
    "int8": 7, "int16": 300, "int32": 70_000, "int64": 2**40 + 5, "uint16": 60_000,
    "uint32": 4_000_000_000, "float64": 2.5, "string": "sé-ü", "bytes": b"\x00\x01bin",
    "records": b"\x00" * 20 + b"batch", "uuid": uuid.UUID(int=0x1234_5678_9ABC),
}


def _in(r: tuple[int, int] | None, v: int) -> bool:
    return r is not None and r[0] <= v <= r[1]


def _scalar(typ: str, default: Any, salt: int) -> Any:
    if typ == "bool":
        return not default
    value = _SAMPLES[typ]
    if typ in ("int8", "int16", "int32", "int64"):
        value += salt
    elif typ == "string":
        value = f"{value}{salt}"
    if value == default:
        value = value + 1
    return value


def sample(cls: type[Message], version: int, nulls: bool = False, salt: int = 0) -> Message:
    """An instance whose fields present at `version` are all non-default (or None when `nulls`
    and the field is nullable there); absent fields keep their defaults."""
    kwargs: dict[str, Any] = {}
    for i, f in enumerate(cls.FIELDS):
        if not _in(f.versions, version):
            continue
        kwargs[f.name] = _value(f, version, nulls, salt + i)
    return cls(**kwargs)


def _value(f: Field, version: int, nulls: bool, salt: int) -> Any:
    if nulls and _in(f.nullable, version) and f.default is not None:
        return None
    if f.type.startswith("[]"):
        elem = f.type[2:]
        if f.struct is not None:
            return [sample(f.struct, version, nulls, salt + k) for k in range(2)]
        if elem == "bool":
            return [True, False]
        return [_scalar(elem, None, salt + k) for k in range(2)]
    if f.struct is not None:
        return sample(f.struct, version, nulls, salt)
    default = f.default if f.default is not DEFAULT else None
    return _scalar(f.type, default, salt)
