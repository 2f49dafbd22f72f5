"""Log compaction planning (`cleanup.policy=compact`): keep the latest record per key. Pure: no IO,
time passed in; `appliance.storage.key_compactor` feeds it batches read from object storage.

Kafka's semantics, scaled to the object tier:
- Only sealed data is compacted: uploaded ranges (never the WAL head), and of those only the
  leading ranges whose newest record is older than `min.compaction.lag.ms` (`cleanable_ranges`).
  The compacted region is that prefix; everything after it is left alone, including records
  whose keys reappear later (Kafka's "first uncleanable offset" works the same way).
- Pass 1 (`KeyCompaction.scan`) maps every key in the region to its latest offset (keys are
  kept as 16-byte BLAKE2b digests, so memory is bounded by the number of distinct keys).
- Pass 2 (`KeyCompaction.filter`) rewrites each batch keeping the records that are the latest
  for their key. Offsets never change: a batch keeps its baseOffset and lastOffsetDelta, so a
  consumer sees gaps, as in any Kafka compacted topic. Kept records are copied byte for byte
  (their offset and timestamp deltas stay valid); recordsCount, batchLength and the CRC-32C are
  recomputed; a compressed batch is recompressed with its own codec. A batch left with no
  record disappears, except the region's last one, which stays whole: a consumer fetching past
  the last kept record must find a batch that carries it to the end of the region (Kafka never
  cleans its active segment, which does the same for the tail of the log). Producer id/epoch/sequence stay in the header: idempotent-producer state
  lives in the manifest, not in the data, so dropping batches does not disturb it.
- Tombstones (null value) are themselves kept while they are the latest for their key, until
  `delete.retention.ms` after the run that first compacted them (Kafka's delete horizon), so a
  consumer reading slowly still sees the deletion. The first-compaction times live in
  `CompactionState.horizons`.
- Control batches, records without a key (written before the topic became compacted) and
  batches whose codec is not importable here are kept unchanged: compaction never loses what
  it cannot read.

A stream is due when its dirty part (ranges above `clean_end`) is at least
`min.cleanable.dirty.ratio` of the cleanable region, or when a kept tombstone's horizon passed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from appliance.errors import CorruptRecordError
from appliance.kafka import records
from appliance.kafka.compression import CodecUnavailable, compress, decompress

MAX_HORIZONS = 64  # bound on CompactionState.horizons; merging keeps tombstones longer, never shorter
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """A compacted topic's settings (Kafka topic configs of the same names)."""

    delete_retention_ms: int = 86_400_000
    min_compaction_lag_ms: int = 0
    min_cleanable_dirty_ratio: float = 0.5


@dataclass(slots=True)
class CompactionState:
    """What the manifest remembers per compacted stream."""

    clean_end: int = 0  # offsets below were compacted at least once
    horizons: list[tuple[int, int]] = field(default_factory=list)  # (end, ms): [prev end, end) first compacted at ms
    tombstones_due_ms: int | None = None  # earliest moment a kept tombstone may go
    runs: int = 0
    last_run_ms: int = 0
    bytes_before: int = 0  # of the last run: region size read and written
    bytes_after: int = 0

    def encode(self) -> list:
        return [STATE_VERSION, self.clean_end, [list(h) for h in self.horizons], self.tombstones_due_ms, self.runs,
                self.last_run_ms, self.bytes_before, self.bytes_after]

    @classmethod
    def decode(cls, raw: Sequence | None) -> CompactionState:
        if not raw or raw[0] != STATE_VERSION:
            return cls()
        _v, clean_end, horizons, due, runs, last, before, after = raw[:8]
        return cls(clean_end, [(int(e), int(t)) for e, t in horizons], due, runs, last, before, after)

    def first_compacted_ms(self, offset: int, now_ms: int) -> int:
        for end, ms in self.horizons:
            if offset < end:
                return ms
        return now_ms  # compacted for the first time in this run


def cleanable_ranges(ranges: Sequence[tuple[int, int, int, int, int]], now_ms: int, policy: CompactionPolicy,
                     keep_from: int | None = None) -> int:
    """How many leading (base, last, bytes, max_ts, object id) ranges may be compacted: each must
    be older than min.compaction.lag.ms and below `keep_from` (data the uplink still needs)."""
    n = 0
    for _base, last, _size, max_ts, _oid in ranges:
        if max_ts > now_ms - policy.min_compaction_lag_ms:
            break
        if keep_from is not None and last >= keep_from:
            break
        n += 1
    return n


def is_due(state: CompactionState, ranges: Sequence[tuple[int, int, int, int, int]], policy: CompactionPolicy,
           now_ms: int) -> bool:
    """Whether the cleanable `ranges` are worth a run (dirty ratio, or a tombstone horizon passed)."""
    if not ranges:
        return False
    total = sum(r[2] for r in ranges)
    dirty = sum(r[2] for r in ranges if r[1] >= state.clean_end)
    if not dirty and (state.tombstones_due_ms is None or now_ms < state.tombstones_due_ms):
        return False
    if state.tombstones_due_ms is not None and now_ms >= state.tombstones_due_ms:
        return True
    return total > 0 and dirty / total >= policy.min_cleanable_dirty_ratio


def key_digest(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=16).digest()


@dataclass(slots=True)
class _Parsed:
    header: records.BatchHeader
    body: bytes
    spans: list[records.RecordSpan]


def _parse(batch: bytes) -> _Parsed | None:
    """The batch's records, or None if it must be kept as it is (control batch, unknown codec)."""
    h = records.read_header(batch)
    if h.is_control:
        return None
    try:
        body = records.batch_body(batch, decompress)
    except CodecUnavailable:
        return None
    except (OSError, EOFError, ValueError) as e:  # the codec libraries' own errors
        raise CorruptRecordError(f"batch at {h.base_offset} does not decompress: {e}") from e
    return _Parsed(h, body, records.record_spans(body, h.records_count))


@dataclass
class RunStats:
    batches_in: int = 0
    batches_out: int = 0
    records_in: int = 0
    records_out: int = 0
    tombstones_dropped: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    kept_as_is: int = 0  # batches compaction could not look into


class KeyCompaction:
    """One compaction run of one stream's region [start, end): scan every batch, then filter
    every batch, in offset order both times."""

    def __init__(self, state: CompactionState, policy: CompactionPolicy, now_ms: int, end: int) -> None:
        self.state = state
        self.policy = policy
        self.now_ms = now_ms
        self.end = end
        self.latest: dict[bytes, int] = {}
        self.stats = RunStats()
        self.changed = False  # some batch was dropped or rewritten
        self._tombstones_due: int | None = None
        self._tombstone_offsets: list[int] = []  # kept tombstones, to keep only the horizons they need

    def scan(self, batch: bytes) -> None:
        p = _parse(batch)
        if p is None:
            return
        latest = self.latest
        base = p.header.base_offset
        for r in p.spans:
            if r.key is not None:
                latest[key_digest(r.key)] = base + r.offset_delta

    def _keep(self, offset: int, r: records.RecordSpan) -> bool:
        if r.key is None:
            return True
        if self.latest.get(key_digest(r.key)) != offset:
            return False
        if not r.tombstone:
            return True
        due = self.state.first_compacted_ms(offset, self.now_ms) + self.policy.delete_retention_ms
        if self.now_ms >= due:
            self.stats.tombstones_dropped += 1
            return False
        self._tombstones_due = due if self._tombstones_due is None else min(self._tombstones_due, due)
        self._tombstone_offsets.append(offset)
        return True

    def filter(self, batch: bytes) -> bytes | None:
        """The batch with only the records to keep (the same bytes if all stay), or None."""
        st = self.stats
        st.batches_in += 1
        st.bytes_in += len(batch)
        p = _parse(batch)
        if p is None:
            st.kept_as_is += 1
            return self._out(batch)
        h = p.header
        st.records_in += h.records_count
        kept = [r for r in p.spans if self._keep(h.base_offset + r.offset_delta, r)]
        if not kept and h.last_offset >= self.end - 1:
            kept = p.spans  # the region's last batch: keep it whole rather than leave a tail gap
            tombstones = [h.base_offset + r.offset_delta for r in p.spans if r.tombstone]
            st.tombstones_dropped -= len(tombstones)
            self._tombstone_offsets.extend(tombstones)  # keep their horizon: droppable once data follows
        st.records_out += len(kept)
        if not kept:
            self.changed = True
            return None
        if len(kept) == len(p.spans):
            return self._out(batch)
        self.changed = True
        body = b"".join(p.body[r.start : r.end] for r in kept)
        if h.compression:
            body = compress(h.compression, body)
        return self._out(records.rebuild_batch(batch, body, len(kept)))

    def _out(self, batch: bytes) -> bytes:
        self.stats.batches_out += 1
        self.stats.bytes_out += len(batch)
        return batch

    def finish(self) -> CompactionState:
        """The stream's state after this run (to commit with the rewritten objects)."""
        old = self.state
        horizons = list(old.horizons)
        if self.end > old.clean_end:
            horizons.append((self.end, self.now_ms))
        # keep a horizon only if a kept tombstone falls in its range (later data never lands
        # in a compacted range, so an empty range can share its successor's entry)
        needed: list[tuple[int, int]] = []
        offsets = sorted(self._tombstone_offsets)
        k, prev = 0, -1
        for end, ms in horizons:
            while k < len(offsets) and offsets[k] < prev:
                k += 1
            if k < len(offsets) and offsets[k] < end:
                needed.append((end, ms))
            prev = end
        while len(needed) > MAX_HORIZONS:  # merge the oldest into its successor (later time: conservative)
            del needed[0]
        return CompactionState(
            clean_end=max(old.clean_end, self.end),
            horizons=needed,
            tombstones_due_ms=self._tombstones_due,
            runs=old.runs + 1,
            last_run_ms=self.now_ms,
            bytes_before=self.stats.bytes_in,
            bytes_after=self.stats.bytes_out,
        )


def compact_batches(batches: Sequence[bytes], state: CompactionState, policy: CompactionPolicy, now_ms: int,
                    end: int) -> tuple[list[bytes], CompactionState, RunStats]:
    """Both passes over batches held in memory (tests, small regions)."""
    run = KeyCompaction(state, policy, now_ms, end)
    for b in batches:
        run.scan(b)
    out = [x for b in batches if (x := run.filter(b)) is not None]
    return out, run.finish(), run.stats


__all__ = ["CompactionPolicy", "CompactionState", "KeyCompaction", "RunStats", "cleanable_ranges",
           "compact_batches", "is_due", "key_digest"]
