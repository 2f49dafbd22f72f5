"""A small Sparkplug B payload encoder for tests, written apart from the appliance's decoder."""

from __future__ import annotations

import struct
import time


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _tag(num: int, wt: int) -> bytes:
    return _varint((num << 3) | wt)


def _len(num: int, data: bytes) -> bytes:
    return _tag(num, 2) + _varint(len(data)) + data


TYPES = {"Int8": 1, "Int16": 2, "Int32": 3, "Int64": 4, "UInt8": 5, "UInt16": 6, "UInt32": 7, "UInt64": 8,
         "Float": 9, "Double": 10, "Boolean": 11, "String": 12, "DateTime": 13, "Bytes": 17, "DataSet": 16,
         "Int16Array": 23, "DoubleArray": 31}


def metric(name: str | None = None, value=None, dtype: str | None = None, *, alias: int | None = None,
           ts: int | None = None, quality: int | None = None, null: bool = False) -> bytes:
    out = b""
    if name is not None:
        out += _len(1, name.encode())
    if alias is not None:
        out += _tag(2, 0) + _varint(alias)
    if ts is not None:
        out += _tag(3, 0) + _varint(ts)
    t = TYPES[dtype] if dtype else None
    if t is not None:
        out += _tag(4, 0) + _varint(t)
    if null:
        out += _tag(7, 0) + b"\x01"
    if quality is not None:  # PropertySet {"Quality": Int32}
        pv = _tag(1, 0) + _varint(3) + _tag(3, 0) + _varint(quality)
        out += _len(9, _len(1, b"Quality") + _len(2, pv))
    if value is not None and not null:
        if isinstance(value, bool):
            out += _tag(14, 0) + _varint(int(value))
        elif dtype in ("Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32"):
            out += _tag(10, 0) + _varint(value & 0xFFFFFFFF)
        elif dtype in ("Int64", "UInt64", "DateTime"):
            out += _tag(11, 0) + _varint(value)
        elif dtype == "Float":
            out += _tag(12, 5) + struct.pack("<f", value)
        elif isinstance(value, float):
            out += _tag(13, 1) + struct.pack("<d", value)
        elif isinstance(value, str):
            out += _len(15, value.encode())
        elif isinstance(value, bytes):
            out += _len(16, value)
    return out


def payload(metrics: list[bytes], seq: int | None = None, ts: int | None = None) -> bytes:
    out = _tag(1, 0) + _varint(ts if ts is not None else int(time.time() * 1000))
    for m in metrics:
        out += _len(2, m)
    if seq is not None:
        out += _tag(3, 0) + _varint(seq)
    return out
