"""Hostile frames: a corpus of valid Kafka requests (every API key and version the codec knows) and
mutations of them that target what decoders get wrong: length fields, signs, truncation, splices."""

from __future__ import annotations

import random
import struct

from appliance.kafka.protocol import codec
from appliance.kafka.protocol.messages import API_KEYS
from tests.kafka.protocol_values import sample

# Values a length or count field should never be trusted with.
HOSTILE_INTS = (0, 1, -1, -2, 0x7F, 0x80, 0xFF, 0x7FFF, -0x8000, 0xFFFF, 0x7FFFFFFF, -0x80000000, 2**31 - 2, 1 << 24)
HOSTILE_VARINTS = (b"\x00", b"\x7f", b"\xff\xff\xff\xff\x07", b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x01",
                   b"\xff" * 6)


def corpus() -> list[bytes]:
    """Request frames without their size prefix: every API key x version, plain and with nulls."""
    frames = []
    for key, entry in sorted(API_KEYS.items()):
        for version in range(entry.min_version, entry.max_version + 1):
            for nulls in (False, True):
                req = sample(entry.request, version, nulls=nulls, salt=version)
                frames.append(codec.encode_request(key, version, 1000 + version, req)[4:])
    return frames


def mutate(frame: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    data = bytearray(frame)
    for _ in range(rounds or rng.randint(1, 4)):
        n = len(data)
        kind = rng.randrange(8)
        pos = rng.randrange(n) if n else 0
        if kind == 0 and n:  # flip one bit
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == 1 and n >= 2:  # a hostile int16 length
            struct.pack_into(">H", data, min(pos, n - 2), rng.choice(HOSTILE_INTS) & 0xFFFF)
        elif kind == 2 and n >= 4:  # a hostile int32 length
            struct.pack_into(">I", data, min(pos, n - 4), rng.choice(HOSTILE_INTS) & 0xFFFFFFFF)
        elif kind == 3:  # a hostile compact (varint) length
            data[pos:pos + 1] = rng.choice(HOSTILE_VARINTS)
        elif kind == 4:  # truncate
            del data[pos:]
        elif kind == 5:  # insert random bytes
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == 6 and n:  # delete a range
            del data[pos:pos + rng.randint(1, 16)]
        elif kind == 7 and n:  # duplicate a range (repeated structs, doubled arrays)
            end = min(n, pos + rng.randint(1, 64))
            data[pos:pos] = data[pos:end]
    return bytes(data)


def frame_with_prefix(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body
