"""The protobuf wire format, as much as Sparkplug B needs. Sans-IO, stdlib only.

Written here rather than depending on `protobuf`: the Sparkplug payload is one small proto2
schema, the decoder must be forgiving in specific ways (unknown fields skipped, values read by
the datatype learnt from a birth certificate) and the generated-code toolchain would be a build
step for ~150 lines of parsing.

A message is a sequence of (field number << 3 | wire type) keys, each followed by a varint (0),
8 bytes (1), a varint length and that many bytes (2), or 4 bytes (5). Groups (3, 4) are not used
by Sparkplug and are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from appliance.errors import CorruptRecordError, ProtocolError
from appliance.kafka.varint import decode_uvarint

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


class WireError(ProtocolError):
    """Bytes that are not a valid protobuf message."""


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Protobuf varints are the same LEB128 as Kafka's unsigned varints: one decoder serves both."""
    try:
        return decode_uvarint(buf, pos)
    except CorruptRecordError as e:
        raise WireError(f"bad varint: {e}") from None


def fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value): ints for varint/fixed, bytes for length-delimited."""
    view = memoryview(buf)
    pos = 0
    end = len(view)
    while pos < end:
        key, pos = read_varint(view, pos)
        number, wtype = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wtype == VARINT:
            value, pos = read_varint(view, pos)
            yield number, wtype, value
        elif wtype == FIXED64:
            if pos + 8 > end:
                raise WireError("fixed64 runs past the end")
            yield number, wtype, int.from_bytes(view[pos:pos + 8], "little")
            pos += 8
        elif wtype == LENGTH:
            n, pos = read_varint(view, pos)
            if pos + n > end:
                raise WireError(f"field {number}: {n} bytes run past the end")
            yield number, wtype, bytes(view[pos:pos + n])
            pos += n
        elif wtype == FIXED32:
            if pos + 4 > end:
                raise WireError("fixed32 runs past the end")
            yield number, wtype, int.from_bytes(view[pos:pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"field {number}: wire type {wtype} is not supported")


def as_float(raw: int) -> float:
    return _F32.unpack(raw.to_bytes(4, "little"))[0]


def as_double(raw: int) -> float:
    return _F64.unpack(raw.to_bytes(8, "little"))[0]


def as_signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


# --- encoding (the host's own commands: NCMD rebirth) ------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers as two's complement, as protobuf does
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(number: int, wtype: int) -> bytes:
    return varint(number << 3 | wtype)


def field_varint(number: int, value: int) -> bytes:
    return key(number, VARINT) + varint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    return key(number, LENGTH) + varint(len(value)) + value


def field_float(number: int, value: float) -> bytes:
    return key(number, FIXED32) + _F32.pack(value)


def field_double(number: int, value: float) -> bytes:
    return key(number, FIXED64) + _F64.pack(value)
