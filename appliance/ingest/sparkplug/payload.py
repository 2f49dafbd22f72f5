"""Sparkplug B payloads (proto2 `Payload`, Sparkplug 3.0): decode, and encode the host's commands.

Sans-IO. Field numbers follow the Sparkplug specification (see the table in each decoder). A
metric's value is kept as (field number, primitive) and read with a datatype later, because data
messages often carry only an alias and the datatype comes from the birth certificate.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Any

from appliance.ingest.sparkplug import wire
from appliance.ingest.sparkplug.wire import WireError, as_double, as_float, as_signed

DATATYPES = {
    0: "Unknown", 1: "Int8", 2: "Int16", 3: "Int32", 4: "Int64", 5: "UInt8", 6: "UInt16", 7: "UInt32",
    8: "UInt64", 9: "Float", 10: "Double", 11: "Boolean", 12: "String", 13: "DateTime", 14: "Text",
    15: "UUID", 16: "DataSet", 17: "Bytes", 18: "File", 19: "Template", 20: "PropertySet",
    21: "PropertySetList", 22: "Int8Array", 23: "Int16Array", 24: "Int32Array", 25: "Int64Array",
    26: "UInt8Array", 27: "UInt16Array", 28: "UInt32Array", 29: "UInt64Array", 30: "FloatArray",
    31: "DoubleArray", 32: "BooleanArray", 33: "StringArray", 34: "DateTimeArray",
}
DATATYPE_IDS = {v: k for k, v in DATATYPES.items()}
_SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}
_ARRAY_FORMATS = {22: "b", 23: "h", 24: "i", 25: "q", 26: "B", 27: "H", 28: "I", 29: "Q", 30: "f", 31: "d",
                  34: "q"}

# value fields of Metric (10-18), PropertyValue (3-10), DataSetValue (1-6), Parameter (3-8) all use
# the same order: int, long, float, double, boolean, string, then bytes / nested types.
_METRIC_VALUE_FIELDS = range(10, 20)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False
    raw: tuple[int, Any] | None = None  # (value field number - 10, primitive): 0 int .. 8 template
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Payload:
    timestamp: int | None = None
    metrics: tuple[Metric, ...] = ()
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None


def _primitive(slot: int, wtype: int, value: Any) -> Any:
    """slot: 0 int(uint32) 1 long(uint64) 2 float 3 double 4 bool 5 string 6 bytes; others nested."""
    if slot == 2:
        return as_float(value)
    if slot == 3:
        return as_double(value)
    if slot == 4:
        return bool(value)
    if slot == 5:
        return value.decode("utf-8", "replace")
    return value


def decode_payload(data: bytes) -> Payload:
    """Payload: 1 timestamp · 2 metrics · 3 seq · 4 uuid · 5 body. Raises WireError."""
    ts = seq = uuid = body = None
    metrics: list[Metric] = []
    for number, wtype, value in wire.fields(data):
        if number == 1 and wtype == wire.VARINT:
            ts = value
        elif number == 2 and wtype == wire.LENGTH:
            metrics.append(decode_metric(value))  # type: ignore[arg-type]
        elif number == 3 and wtype == wire.VARINT:
            seq = value
        elif number == 4 and wtype == wire.LENGTH:
            uuid = value.decode("utf-8", "replace")  # type: ignore[union-attr]
        elif number == 5 and wtype == wire.LENGTH:
            body = value
    return Payload(ts, tuple(metrics), seq, uuid, body)  # type: ignore[arg-type]


def decode_metric(data: bytes) -> Metric:
    """Metric: 1 name · 2 alias · 3 timestamp · 4 datatype · 5 is_historical · 6 is_transient ·
    7 is_null · 8 metadata · 9 properties · 10-19 value (int, long, float, double, boolean,
    string, bytes, dataset, template, extension)."""
    kw: dict[str, Any] = {}
    for number, wtype, value in wire.fields(data):
        if number == 1 and wtype == wire.LENGTH:
            kw["name"] = value.decode("utf-8", "replace")  # type: ignore[union-attr]
        elif number == 2 and wtype == wire.VARINT:
            kw["alias"] = value
        elif number == 3 and wtype == wire.VARINT:
            kw["timestamp"] = value
        elif number == 4 and wtype == wire.VARINT:
            kw["datatype"] = value
        elif number == 5:
            kw["is_historical"] = bool(value)
        elif number == 6:
            kw["is_transient"] = bool(value)
        elif number == 7:
            kw["is_null"] = bool(value)
        elif number == 9 and wtype == wire.LENGTH:
            kw["properties"] = decode_property_set(value)  # type: ignore[arg-type]
        elif number in _METRIC_VALUE_FIELDS:
            slot = number - 10
            if slot == 7 and wtype == wire.LENGTH:
                kw["raw"] = (slot, decode_dataset(value))  # type: ignore[arg-type]
            elif slot == 8 and wtype == wire.LENGTH:
                kw["raw"] = (slot, decode_template(value))  # type: ignore[arg-type]
            elif slot <= 6:
                kw["raw"] = (slot, _primitive(slot, wtype, value))
    return Metric(**kw)


def decode_property_set(data: bytes) -> dict[str, Any]:
    """PropertySet: 1 keys · 2 values (PropertyValue: 1 type · 2 is_null · 3-8 value · 9 set · 10 set list)."""
    keys: list[str] = []
    values: list[Any] = []
    for number, wtype, value in wire.fields(data):
        if number == 1 and wtype == wire.LENGTH:
            keys.append(value.decode("utf-8", "replace"))  # type: ignore[union-attr]
        elif number == 2 and wtype == wire.LENGTH:
            values.append(_decode_property_value(value))  # type: ignore[arg-type]
    return dict(zip(keys, values, strict=False))


def _decode_property_value(data: bytes) -> Any:
    ptype = 0
    raw: tuple[int, Any] | None = None
    for number, wtype, value in wire.fields(data):
        if number == 1:
            ptype = value  # type: ignore[assignment]
        elif number == 2 and value:
            return None
        elif 3 <= number <= 8:
            raw = (number - 3, _primitive(number - 3, wtype, value))
        elif number == 9 and wtype == wire.LENGTH:
            return decode_property_set(value)  # type: ignore[arg-type]
        elif number == 10 and wtype == wire.LENGTH:
            return [decode_property_set(v) for n, _, v in wire.fields(value) if n == 1]  # type: ignore[arg-type]
    return None if raw is None else interpret(ptype, raw)  # type: ignore[arg-type]


def decode_dataset(data: bytes) -> dict[str, Any]:
    """DataSet: 1 num_of_columns · 2 columns · 3 types · 4 rows (Row: 1 elements, DataSetValue 1-6)."""
    columns: list[str] = []
    types: list[int] = []
    rows: list[list[tuple[int, Any]]] = []
    for number, wtype, value in wire.fields(data):
        if number == 2 and wtype == wire.LENGTH:
            columns.append(value.decode("utf-8", "replace"))  # type: ignore[union-attr]
        elif number == 3:
            if wtype == wire.LENGTH:  # packed
                pos = 0
                while pos < len(value):  # type: ignore[arg-type]
                    t, pos = wire.read_varint(value, pos)  # type: ignore[arg-type]
                    types.append(t)
            else:
                types.append(value)  # type: ignore[arg-type]
        elif number == 4 and wtype == wire.LENGTH:
            row = []
            for n, _, element in wire.fields(value):  # type: ignore[arg-type]
                if n == 1:
                    cell = None
                    for en, ewt, ev in wire.fields(element):  # type: ignore[arg-type]
                        if 1 <= en <= 6:
                            cell = (en - 1, _primitive(en - 1, ewt, ev))
                    row.append(cell)
            rows.append(row)  # type: ignore[arg-type]
    out_rows = [[None if c is None else interpret(types[i] if i < len(types) else 0, c) for i, c in enumerate(r)]
                for r in rows]
    return {"columns": columns, "types": [DATATYPES.get(t, str(t)) for t in types], "rows": out_rows}


def decode_template(data: bytes) -> dict[str, Any]:
    """Template: 1 version · 2 metrics · 3 parameters · 4 template_ref · 5 is_definition."""
    out: dict[str, Any] = {"metrics": []}
    for number, wtype, value in wire.fields(data):
        if number == 1 and wtype == wire.LENGTH:
            out["version"] = value.decode("utf-8", "replace")  # type: ignore[union-attr]
        elif number == 2 and wtype == wire.LENGTH:
            m = decode_metric(value)  # type: ignore[arg-type]
            out["metrics"].append({"name": m.name, "datatype": DATATYPES.get(m.datatype or 0, "Unknown"),
                                   "value": metric_value(m, m.datatype or 0)})
        elif number == 4 and wtype == wire.LENGTH:
            out["template_ref"] = value.decode("utf-8", "replace")  # type: ignore[union-attr]
        elif number == 5:
            out["is_definition"] = bool(value)
    return out


def interpret(datatype: int, raw: tuple[int, Any]) -> Any:
    """A JSON-able value from a primitive read off the wire, given the Sparkplug datatype."""
    slot, value = raw
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None and isinstance(value, int):
        return as_signed(value, bits)
    if datatype == 11:
        return bool(value)
    if slot == 6 and isinstance(value, bytes):
        fmt = _ARRAY_FORMATS.get(datatype)
        if fmt is not None and len(value) % struct.calcsize(fmt) == 0:
            return list(struct.unpack(f"<{len(value) // struct.calcsize(fmt)}{fmt}", value))
        if datatype == 33:  # StringArray: NUL-terminated UTF-8 strings
            return [s.decode("utf-8", "replace") for s in value.split(b"\0")[:-1]]
        if datatype == 32 and len(value) >= 4:  # BooleanArray: uint32 count, then bits MSB first
            count = int.from_bytes(value[:4], "little")
            bits_ = value[4:]
            return [bool(bits_[i // 8] >> (7 - i % 8) & 1) for i in range(min(count, len(bits_) * 8))]
        return base64.b64encode(value).decode()
    return value


def metric_value(m: Metric, datatype: int) -> Any:
    if m.is_null or m.raw is None:
        return None
    return interpret(datatype, m.raw)


# --- encoding: the host's NCMD (rebirth request) ------------------------------------------------


def encode_metric(name: str, datatype: int, value: Any, timestamp: int | None = None) -> bytes:
    out = wire.field_bytes(1, name.encode())
    if timestamp is not None:
        out += wire.field_varint(3, timestamp)
    out += wire.field_varint(4, datatype)
    if datatype == 11:
        out += wire.field_varint(14, int(bool(value)))
    elif datatype in (1, 2, 3, 5, 6, 7):
        out += wire.field_varint(10, value & 0xFFFFFFFF)
    elif datatype in (4, 8, 13):
        out += wire.field_varint(11, value)
    elif datatype == 9:
        out += wire.field_float(12, value)
    elif datatype == 10:
        out += wire.field_double(13, value)
    elif datatype in (12, 14, 15):
        out += wire.field_bytes(15, value.encode())
    else:
        out += wire.field_bytes(16, bytes(value))
    return out


def encode_payload(timestamp: int, metrics: list[bytes], seq: int | None = None) -> bytes:
    out = wire.field_varint(1, timestamp)
    for m in metrics:
        out += wire.field_bytes(2, m)
    if seq is not None:
        out += wire.field_varint(3, seq)
    return out


def rebirth_request(timestamp: int) -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    return encode_payload(timestamp, [encode_metric("Node Control/Rebirth", 11, True, timestamp)])


__all__ = ["DATATYPES", "DATATYPE_IDS", "Metric", "Payload", "WireError", "decode_payload", "encode_payload",
           "encode_metric", "interpret", "metric_value", "rebirth_request"]
