"""Read records of one topic partition for the admin API's live tail (and the TUI's replay).

Reads go through the LogStore port like a Kafka fetch, from an offset or a timestamp, and the
batches are decoded with `appliance.kafka.records.decode_records`. The broker itself never
decompresses; here an operator wants to see values, so gzip is decompressed with the standard
library and snappy, lz4 and zstd when their packages are importable. A batch that cannot be
decoded comes back as one entry with a `note` ("compressed (snappy) batch ..."), never an error.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from appliance.admin.models import MAX_TAIL_FIELD, RecordHeader, TailRecord, TailResult
from appliance.errors import CorruptRecordError, OffsetOutOfRangeError, StreamNotFoundError
from appliance.kafka.compression import CodecUnavailable, decompress
from appliance.kafka.records import COMPRESSION_NAMES, decode_records, iter_batches_lenient, read_header

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
READ_BYTES = 1 << 20  # per storage read; a tail of MAX_LIMIT small records takes one or two
MAX_READS = 16  # bound the work of one request whatever the batches look like
MAX_READ_RECORDS = 1 << 31  # no cut


def _b64(data: bytes | None) -> tuple[str | None, bool]:
    if data is None:
        return None, False
    cut = len(data) > MAX_TAIL_FIELD
    return base64.b64encode(data[:MAX_TAIL_FIELD]).decode("ascii"), cut


def batch_records(batch: bytes | memoryview, start: int, limit: int = MAX_LIMIT) -> list[TailRecord]:
    """Up to `limit` records of one batch at or after offset `start` (control batches give none)."""
    h = read_header(batch)
    if h.is_control or h.last_offset < start:
        return []
    try:
        records = decode_records(batch, decompress)
    except CodecUnavailable as e:
        return [TailRecord(max(h.base_offset, start), h.base_timestamp,
                           note=f"compressed ({COMPRESSION_NAMES.get(h.compression, h.compression)}) batch of "
                                f"{h.records_count} records, offsets {h.base_offset}-{h.last_offset}: "
                                f"{e} is not available here")]
    except (CorruptRecordError, OSError, ValueError, EOFError) as e:  # gzip raises OSError/EOFError
        return [TailRecord(max(h.base_offset, start), h.base_timestamp,
                           note=f"batch at offsets {h.base_offset}-{h.last_offset} cannot be decoded: {e}")]
    out: list[TailRecord] = []
    for r in records:
        if r.offset < start:
            continue
        if len(out) >= limit:
            break
        key, cut_k = _b64(r.key)
        value, cut_v = _b64(r.value)
        headers = [RecordHeader(k, _b64(v)[0]) for k, v in r.headers]
        out.append(TailRecord(r.offset, r.timestamp, key, value, headers, cut_k or cut_v))
    return out


async def tail(app: Any, topic: str, partition: int, *, offset: int | None = None,
               timestamp: int | None = None, limit: int = DEFAULT_LIMIT) -> TailResult:
    """Records from `offset`, or from the first at or after `timestamp` (ms), or else the last
    `limit`. Offsets outside the retained range are moved into it. Raises LookupError for an
    unknown topic or partition."""
    if app.broker.topics.get(topic) is None:
        raise LookupError(f"topic {topic!r} does not exist")
    stream = app.broker.topics.stream(topic, partition)
    if stream is None:
        raise LookupError(f"topic {topic!r} has no partition {partition}")
    logs = app.broker.logs
    limit = max(1, min(limit, MAX_LIMIT))
    try:
        o = logs.offsets(stream)
    except StreamNotFoundError:
        raise LookupError(f"topic {topic!r} was deleted") from None
    if offset is not None:
        start = offset
    elif timestamp is not None:
        found = await logs.offset_for_timestamp(stream, timestamp)
        start = o.high_watermark if found is None else found[0]
    else:
        start = o.high_watermark - limit
    start = min(max(start, o.log_start), o.high_watermark)
    records: list[TailRecord] = []
    position, hw = start, o.high_watermark
    # A timestamp search lands on a batch: its records before that moment are skipped.
    skipping = offset is None and timestamp is not None
    for _ in range(MAX_READS):
        if len(records) >= limit or position >= hw:
            break
        try:
            result = await logs.read(stream, position, READ_BYTES)
        except OffsetOutOfRangeError as e:  # retention moved the log start meanwhile: go on from it
            if e.log_start <= position:
                break
            position = e.log_start
            continue
        except StreamNotFoundError:
            raise LookupError(f"topic {topic!r} was deleted") from None
        hw = result.high_watermark
        if not result.batches:
            break
        for raw in result.batches:
            for batch in iter_batches_lenient(raw):
                if len(records) >= limit:
                    break
                # one more than fits tells whether the batch is done; a timestamp search needs all
                found = batch_records(batch, position, MAX_READ_RECORDS if skipping else limit + 1)
                if skipping:
                    found = list(itertools.dropwhile(lambda r: r.note is None and r.timestamp < timestamp, found))
                    skipping = not found
                room = limit - len(records)
                if len(found) > room:  # stop inside the batch; the next call resumes there
                    records += found[:room]
                    position = records[-1].offset + 1
                    break
                records += found
                position = max(position, read_header(batch).last_offset + 1)
    return TailResult(topic, partition, o.log_start, hw, start, position, records)
