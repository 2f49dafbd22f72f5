"""Record batches for ingested messages, faster than the general `records.build_batch`.

Same bytes as `appliance.kafka.records.build_batch` (a test checks it), but tuned for the MQTT
hot path: messages from one device repeat the same headers (mqtt.topic, mqtt.qos, client id,
asset context), so each distinct header tuple is encoded once and cached, and small varints
come from a table. Pure.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from appliance.kafka.records import MAGIC, NO_PRODUCER_ID, NO_SEQUENCE, crc32c

_CACHE_LIMIT = 20_000
_MINUS_ONE = b"\x01"
_TAIL = struct.Struct(">hiqqqhii")
_HEAD = struct.Struct(">qiibI")

Header = tuple[str, "bytes | None"]


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_TABLE_SIZE = 8192  # zigzag varints of 0..8191 (one or two bytes) come from a table
_ZZ = [_zigzag(n) for n in range(_TABLE_SIZE)]


def zigzag(n: int) -> bytes:
    return _ZZ[n] if 0 <= n < _TABLE_SIZE else _zigzag(n)


def _field(data: bytes | None) -> bytes:
    if data is None:
        return _MINUS_ONE
    return zigzag(len(data)) + data


class BatchEncoder:
    def __init__(self) -> None:
        self._headers: dict[tuple, bytes] = {}
        self._by_id: dict[int, tuple[object, bytes]] = {}

    def headers(self, headers: Sequence[Header]) -> bytes:
        # The mapper hands out the same tuple object for repeated headers: an identity hit skips
        # hashing the whole tuple (the entry keeps the object alive, so its id is not reused).
        hit = self._by_id.get(id(headers))
        if hit is not None and hit[0] is headers:
            return hit[1]
        key = headers if isinstance(headers, tuple) else tuple(headers)
        enc = self._headers.get(key)
        if enc is None:
            enc = zigzag(len(key)) + b"".join(_field(k.encode()) + _field(v) for k, v in key)
            if len(self._headers) >= _CACHE_LIMIT:
                self._headers.clear()
            self._headers[key] = enc
        if len(self._by_id) >= _CACHE_LIMIT:
            self._by_id.clear()
        self._by_id[id(headers)] = (headers, enc)
        return enc

    def build(self, records: Sequence[tuple[bytes | None, bytes | None, Sequence[Header]]],
              timestamps: Sequence[int]) -> bytes:
        """An uncompressed magic-2 batch, baseOffset 0, no producer id (like build_batch)."""
        return self.build_records([_Rec(k, v, h, t) for (k, v, h), t in zip(records, timestamps, strict=True)])

    def build_records(self, records: Sequence[Any]) -> bytes:
        """`build` for objects with `key`, `value`, `headers` and `timestamp_ms` attributes (the
        sink's OutRecords), without building a tuple per record first."""
        timestamps = [r.timestamp_ms for r in records]
        base_ts = min(timestamps)
        parts: list[bytes] = []
        append = parts.append
        zz, size = _ZZ, _TABLE_SIZE
        last_key: object = parts  # never a key
        key_field = b""
        last_headers: object = parts
        headers_field = b""
        for i, rec in enumerate(records):
            key = rec.key
            if key is not last_key:  # records of one topic share their key and headers objects
                key_field, last_key = _field(key), key
            headers = rec.headers
            if headers is not last_headers:
                headers_field, last_headers = self.headers(headers), headers
            d = timestamps[i] - base_ts
            value = rec.value
            if value is None:
                value_field = _MINUS_ONE
            else:
                n = len(value)
                value_field = (zz[n] if n < size else _zigzag(n)) + value
            body = b"".join((b"\x00", zz[d] if 0 <= d < size else _zigzag(d), zz[i] if i < size else _zigzag(i),
                             key_field, value_field, headers_field))
            n = len(body)
            append(zz[n] if n < size else _zigzag(n))
            append(body)
        n = len(records)
        tail = _TAIL.pack(0, n - 1, base_ts, max(timestamps), NO_PRODUCER_ID, -1, NO_SEQUENCE, n) + b"".join(parts)
        return _HEAD.pack(0, len(tail) + 9, -1, MAGIC, crc32c(tail)) + tail


class _Rec(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header]
    timestamp_ms: int
