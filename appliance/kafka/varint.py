"""Variable-length integers used by the Kafka protocol (unsigned) and record format (zigzag)."""

from __future__ import annotations

from appliance.errors import CorruptRecordError


def encode_uvarint(value: int) -> bytes:
    if value < 0:
        raise ValueError("unsigned varint cannot be negative")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Return (value, new_pos). Raises CorruptRecordError on truncation or > 10 bytes."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise CorruptRecordError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    """Zigzag-encoded signed varint (record fields)."""
    return encode_uvarint((value << 1) ^ (value >> 63))


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    raw, pos = decode_uvarint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos
