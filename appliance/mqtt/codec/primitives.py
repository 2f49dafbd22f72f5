"""MQTT data representations (spec 1.5): integers, variable byte integers, UTF-8 strings, binary.

Decoders take (buffer, pos) and return (value, new_pos); every shortfall is a MalformedPacket.
"""

from __future__ import annotations

from appliance.mqtt.codec.errors import MalformedPacket

MAX_VARINT = 268_435_455  # four bytes of 7 bits


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"variable byte integer out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    for i in range(4):
        if pos + i >= len(buf):
            raise MalformedPacket("truncated variable byte integer")
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            # The spec asks for the minimal encoding; a trailing zero byte is not minimal.
            if i and b == 0:
                raise MalformedPacket("variable byte integer is not minimally encoded")
            return value, pos + i + 1
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def validate_utf8_text(text: str) -> None:
    """Rules every MQTT UTF-8 string obeys (spec 1.5.4): no U+0000, no surrogates, <= 65535 bytes."""
    if "\x00" in text:
        raise MalformedPacket("UTF-8 string contains U+0000")


def encode_str(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("UTF-8 string longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def encode_bin(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + bytes(data)


def decode_bin(buf: bytes | memoryview, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(buf):
        raise MalformedPacket("truncated length prefix")
    n = (buf[pos] << 8) | buf[pos + 1]
    end = pos + 2 + n
    if end > len(buf):
        raise MalformedPacket("length prefix runs past the packet")
    return bytes(buf[pos + 2:end]), end


def decode_str(buf: bytes | memoryview, pos: int) -> tuple[str, int]:
    raw, pos = decode_bin(buf, pos)
    try:
        # Python's strict decoder rejects overlong forms and encoded surrogates (U+D800-DFFF).
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("string is not well-formed UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket("UTF-8 string contains U+0000")
    return text, pos


def decode_u8(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise MalformedPacket("truncated byte")
    return buf[pos], pos + 1


def decode_u16(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    if pos + 2 > len(buf):
        raise MalformedPacket("truncated two byte integer")
    return (buf[pos] << 8) | buf[pos + 1], pos + 2


def decode_u32(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    if pos + 4 > len(buf):
        raise MalformedPacket("truncated four byte integer")
    return int.from_bytes(buf[pos:pos + 4], "big"), pos + 4
