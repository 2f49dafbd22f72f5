"""Log compaction in the object tier: rewrite sealed ranges, commit atomically, survive crashes."""

from __future__ import annotations

import pytest

from appliance.kafka import records
from appliance.storage.key_compaction import CompactionPolicy, CompactionState
from appliance.storage.manifest import FencedError
from appliance.storage.objects import MemoryObjectStore
from appliance.storage.tier import RetentionPolicy
from tests.storage.conftest import NOW
from tests.storage.objects.helpers import running_tier

KEYS = 20


async def _produce_keys(st, sid, rounds: int, *, ts: int = NOW, tombstones: tuple[int, ...] = (),
                        upload_each: bool = True) -> None:
    """`rounds` upload rounds; each writes every key once (value r<round>), in 5-record batches."""
    for r in range(rounds):
        for b in range(0, KEYS, 5):
            recs = [(b"key-%02d" % k, None if (r == rounds - 1 and k in tombstones) else b"r%d-%02d" % (r, k) + b"." * 300,
                     []) for k in range(b, b + 5)]
            p = st.logs.append(sid, records.build_batch(recs, timestamp_ms=ts), now_ms=ts)
            await p.durable()
        if upload_each:
            await st.tier.upload_all()
    await st.tier.upload_all()


async def read_all(st, sid: int, start: int = 0) -> list[bytes]:
    """Every batch from `start` to the high watermark like a consumer fetching: a compacted log
    has offset gaps, so a fetch may answer with a batch after the asked offset, never before."""
    out: list[bytes] = []
    pos = start
    hw = st.logs.offsets(sid).high_watermark
    for _ in range(10_000):
        if pos >= hw:
            break
        res = await st.logs.read(sid, pos, 16 << 10)
        assert res.batches, f"no batches at {pos} < hw {hw}"
        for b in res.batches:
            h = records.read_header(b)
            if h.last_offset < pos:
                continue
            out.append(b)
            pos = h.last_offset + 1
    return out


def _latest(batches: list[bytes]) -> dict[bytes, bytes | None]:
    out: dict[bytes, bytes | None] = {}
    offsets = []
    for b in batches:
        for rec in records.decode_records(b):
            out[rec.key] = rec.value[:5] if rec.value is not None else None
            offsets.append(rec.offset)
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    return out


def _compacting(st, sid, other=None, **policy):
    pol = {sid: RetentionPolicy(-1, -1, None, CompactionPolicy(**policy))}
    if other is not None:
        pol[other] = RetentionPolicy(-1, -1)
    st.set_retention_source(lambda: pol)


def _data_keys(store) -> set[str]:
    return {k for k in store.objects if k.startswith("data/")}


async def test_compaction_keeps_the_latest_value_per_key_and_frees_objects(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "d", store, stream_object_bytes=4 << 10) as st:
        sid = await st.logs.create_stream("plc-state-0")
        other = await st.logs.create_stream("telemetry-0")  # a delete-policy stream sharing objects
        p = st.logs.append(other, records.build_batch([(None, b"t" * 100, [])], timestamp_ms=NOW), now_ms=NOW)
        await p.durable()
        await _produce_keys(st, sid, 4)
        hw = st.logs.offsets(sid).high_watermark
        before = _data_keys(store)
        uncompacted = sum(r[2] for r in st.tier.manifest.stream_ranges(sid))
        _compacting(st, sid, other)
        await st.tier.maintain()
        await st.tier.collect_garbage()
        got = await read_all(st, sid)
        assert _latest(got) == {b"key-%02d" % k: b"r3-%02d" % k for k in range(KEYS)}
        assert sum(records.read_header(b).records_count for b in got) == KEYS  # one record per key left
        assert st.logs.offsets(sid) .high_watermark == hw and st.logs.offsets(sid).log_start == 0
        compacted = sum(r[2] for r in st.tier.manifest.stream_ranges(sid))
        assert compacted < uncompacted / 3
        assert before - _data_keys(store), "objects holding only superseded data are deleted"
        assert len(await read_all(st, other)) == 1  # the other stream is untouched
        state = CompactionState.decode(st.tier.manifest.compaction[sid])
        assert state.clean_end == hw and state.runs == 1
        status = st.status()
        assert status.key_compactions == 1 and status.key_compaction_bytes_out < status.key_compaction_bytes_in
        # nothing new: not due again; new data lands after the compacted region, offsets go on
        assert await st.tier.key_compactor.run_once() == 0
        await _produce_keys(st, sid, 2)
        assert await st.tier.key_compactor.run_once() == 1
        assert _latest(await read_all(st, sid)) == {b"key-%02d" % k: b"r1-%02d" % k for k in range(KEYS)}


async def test_reads_below_the_clean_end_never_come_from_the_uncompacted_wal(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "d", store, wal_segment_size=8 << 20) as st:
        sid = await st.logs.create_stream("s-0")
        # Fault injection: the WAL does not learn about uploads, so it keeps serving the
        # uploaded (uncompacted) offsets, as it does until a shared segment can go.
        trim = st.wal.mark_uploaded
        st.wal.mark_uploaded = lambda ends: None
        try:
            await _produce_keys(st, sid, 3, upload_each=False)
            _compacting(st, sid)
            assert await st.tier.key_compactor.run_once() == 1
            assert st.wal.first_indexed(sid) == 0  # the WAL still holds the uncompacted offsets
            got = await read_all(st, sid)
            assert sum(records.read_header(b).records_count for b in got) == KEYS
            res = await st.logs.read(sid, 0, 1 << 20)  # a fetch from the start gets the compacted log
            assert records.decode_records(res.batches[0])[0].offset >= 40
        finally:
            st.wal.mark_uploaded = trim
            trim({sid: 60})


async def test_min_compaction_lag_and_tombstones_with_an_injected_clock(tmp_path):
    store = MemoryObjectStore()
    now = [NOW / 1000]
    async with running_tier(tmp_path / "d", store, stream_object_bytes=4 << 10) as st:
        st.tier.clock = lambda: now[0]
        sid = await st.logs.create_stream("s-0")
        await _produce_keys(st, sid, 2, tombstones=(3, 4))
        _compacting(st, sid, min_compaction_lag_ms=60_000, delete_retention_ms=3_600_000)
        assert await st.tier.key_compactor.run_once() == 0  # data younger than the lag
        now[0] += 61
        assert await st.tier.key_compactor.run_once() == 1
        latest = _latest(await read_all(st, sid))
        assert latest[b"key-03"] is None and latest[b"key-04"] is None and len(latest) == KEYS
        now[0] += 3500
        assert await st.tier.key_compactor.run_once() == 0  # nothing dirty, horizon not reached
        now[0] += 100
        assert await st.tier.key_compactor.run_once() == 1  # the tombstones' horizon passed
        latest = _latest(await read_all(st, sid))
        assert b"key-03" not in latest and b"key-04" not in latest and len(latest) == KEYS - 2


class _Crash(Exception):
    pass


@pytest.mark.parametrize("where", ["before_commit", "after_commit"])
async def test_crash_during_compaction_recovers_old_or_new_and_collects_orphans(tmp_path, where):
    store = MemoryObjectStore()
    data = tmp_path / "d"
    async with running_tier(data, store, close=False, stream_object_bytes=4 << 10, delete_grace=3600.0) as st:
        sid = await st.logs.create_stream("s-0")
        await _produce_keys(st, sid, 3)
        original = await read_all(st, sid)
        keys_before = _data_keys(store)
        _compacting(st, sid)
        if where == "before_commit":
            async def crash(*_a, **_k):
                raise _Crash()
            st.tier.manifests.commit = crash  # the new objects are uploaded, the manifest never moves
            with pytest.raises(_Crash):
                await st.tier.key_compactor.run_once()
            assert _data_keys(store) > keys_before
        else:
            assert await st.tier.key_compactor.run_once() == 1  # committed; old objects wait for the grace
            assert keys_before <= _data_keys(store)
    async with running_tier(data, store, stream_object_bytes=4 << 10) as st:  # the node comes back
        got = await read_all(st, sid)
        if where == "before_commit":
            assert got == original and st.tier.manifest.compaction == {}
        else:
            assert sum(records.read_header(b).records_count for b in got) == KEYS
        await st.tier.collect_garbage(orphans=True)
        referenced = {o.key for o in st.tier.manifest.objects.values()}
        assert _data_keys(store) == referenced  # the crash's leftovers are gone
        _compacting(st, sid)
        await st.tier.key_compactor.run_once()
        assert _latest(await read_all(st, sid)) == {b"key-%02d" % k: b"r2-%02d" % k for k in range(KEYS)}


async def test_cloud_node_recovers_the_compacted_log_from_the_bucket(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "a", store, stream_object_bytes=4 << 10) as st:
        sid = await st.logs.create_stream("s-0")
        await _produce_keys(st, sid, 3, tombstones=(0,))
        _compacting(st, sid)
        assert await st.tier.key_compactor.run_once() == 1
        expected = await read_all(st, sid)
    async with running_tier(tmp_path / "empty", store) as st:  # a new disk
        assert await read_all(st, sid) == expected
        assert CompactionState.decode(st.tier.manifest.compaction[sid]).tombstones_due_ms is not None


async def test_a_fenced_node_commits_no_compaction(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "a", store, stream_object_bytes=4 << 10) as st:
        sid = await st.logs.create_stream("s-0")
        await _produce_keys(st, sid, 3)
        seq = st.tier.manifests.seq
        async with running_tier(tmp_path / "b", store):  # another node takes the bucket
            _compacting(st, sid)
            assert await st.tier.key_compactor.run_once() == 0
            assert isinstance(st.tier.fenced, FencedError) and st.tier.manifests.seq == seq
