"""Kafka batch compression codecs (attributes bits 0-2): decompress and compress record bodies.

The broker stores batches as clients send them and never needs this on the produce/fetch path.
Two places do look inside: the admin tail (an operator wants to see values) and log compaction
(`cleanup.policy=compact` rewrites batches keeping the latest record per key). gzip comes with
the standard library; snappy, lz4 and zstd work when their packages are importable, otherwise
`CodecUnavailable` is raised and callers leave such a batch as it is.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable

_XERIAL_MAGIC = b"\x82SNAPPY\x00"


class CodecUnavailable(Exception):
    """The batch's codec has no importable implementation here."""


def _snappy_mod():
    try:
        import snappy  # python-snappy: optional
    except ImportError:
        raise CodecUnavailable("snappy") from None
    return snappy


def _lz4_mod():
    try:
        import lz4.frame  # optional
    except ImportError:
        raise CodecUnavailable("lz4") from None
    return lz4.frame


def _zstd_mod():
    try:
        import zstandard  # optional
    except ImportError:
        raise CodecUnavailable("zstd") from None
    return zstandard


def _snappy_decompress(data: bytes) -> bytes:
    snappy = _snappy_mod()
    if data.startswith(_XERIAL_MAGIC):  # the Java client's framing: 16-byte header, then sized chunks
        out, pos = bytearray(), 16
        while pos + 4 <= len(data):
            (n,) = struct.unpack_from(">i", data, pos)
            out += snappy.uncompress(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return bytes(out)
    return snappy.uncompress(data)


def _zstd_decompress(data: bytes) -> bytes:
    # a streaming reader: producers do not always write the content size into the frame
    return _zstd_mod().ZstdDecompressor().decompressobj().decompress(data)


_DECOMPRESS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip.decompress,
    2: _snappy_decompress,
    3: lambda d: _lz4_mod().decompress(d),
    4: _zstd_decompress,
}
# snappy is written raw (unframed): librdkafka, kafka-python and the Java client all read it.
_COMPRESS: dict[int, Callable[[bytes], bytes]] = {
    1: lambda d: gzip.compress(d, mtime=0),
    2: lambda d: _snappy_mod().compress(d),
    3: lambda d: _lz4_mod().compress(d),
    4: lambda d: _zstd_mod().ZstdCompressor().compress(d),
}


def decompress(codec: int, data: bytes) -> bytes:
    fn = _DECOMPRESS.get(codec)
    if fn is None:
        raise CodecUnavailable(f"codec {codec}")
    return fn(data)


def compress(codec: int, data: bytes) -> bytes:
    fn = _COMPRESS.get(codec)
    if fn is None:
        raise CodecUnavailable(f"codec {codec}")
    return fn(data)


__all__ = ["CodecUnavailable", "compress", "decompress"]
