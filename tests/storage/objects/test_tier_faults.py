"""The object tier under store faults, in-process: the whole WAL tail is uploaded at shutdown; a
corrupt or truncated object is detected, counted, reported, refused to readers with a StorageError
(KAFKA_STORAGE_ERROR) while other streams keep serving, and left out of (log) compaction."""

from __future__ import annotations

import pytest
import trio

from appliance.errors import StorageError
from appliance.storage import stream_object as so
from appliance.storage.objects import MemoryObjectStore
from tests.storage.objects.helpers import produce, read_all, running_tier, values


async def _two_streams_uploaded(tmp_path, store) -> tuple[int, int]:
    """Streams a and b, each uploaded into its own objects (stream_object_bytes is small)."""
    async with running_tier(tmp_path / "plant", store) as st:
        a = await st.logs.create_stream("bad-0")
        b = await st.logs.create_stream("good-0")
        await produce(st, a, 120, tag=b"a")
        await produce(st, b, 120, tag=b"b")
    return a, b


async def test_shutdown_uploads_a_tail_larger_than_one_round(tmp_path):
    # Found by the corruption scenario: a round cut short INSIDE a stream by its memory cap did
    # not say "more to come", so close() stopped after one round and left the rest in the WAL
    # (a cloud node that then lost its disk lost it; a plant uploaded it only a timer later).
    store = MemoryObjectStore()
    a, b = await _two_streams_uploaded(tmp_path, store)  # ~264 KiB pending at close, cap 192 KiB
    async with running_tier(tmp_path / "cold", store) as st:
        assert st.logs.offsets(b).high_watermark == 120
        assert values(await read_all(st, a)) == [b"a%06d" % i + b"." * 1000 for i in range(120)]
        assert values(await read_all(st, b)) == [b"b%06d" % i + b"." * 1000 for i in range(120)]


def _objects_of(store: MemoryObjectStore, sid: int) -> list[str]:
    out = []
    for key, data in sorted(store.objects.items()):
        if key.startswith("data/") and any(e.stream_id == sid for e in so.read_index(data)):
            out.append(key)
    return out


def _flip_in_first_block(store: MemoryObjectStore, key: str) -> None:
    data = bytearray(store.objects[key])
    first = so.read_index(bytes(data))[0]
    data[first.position + first.length // 2] ^= 0xFF
    store.objects[key] = bytes(data)


@pytest.mark.parametrize("damage", ["flip", "truncate", "footer"])
async def test_corrupt_object_is_detected_reported_and_other_streams_serve(tmp_path, damage):
    store = MemoryObjectStore()
    a, b = await _two_streams_uploaded(tmp_path, store)
    victim = _objects_of(store, a)[0]
    assert victim not in _objects_of(store, b)
    if damage == "flip":
        _flip_in_first_block(store, victim)
    elif damage == "truncate":
        store.objects[victim] = store.objects[victim][: len(store.objects[victim]) // 3]
    else:
        data = bytearray(store.objects[victim])
        data[-3] ^= 0x55  # the footer magic
        store.objects[victim] = bytes(data)
    # A cold node (empty data dir) recovers from the bucket and reads everything back.
    async with running_tier(tmp_path / "cold", store) as st:
        with pytest.raises(StorageError) as err:  # the fetch gets KAFKA_STORAGE_ERROR, not garbage
            await st.logs.read(a, 0, 64 << 10)
        assert isinstance(err.value, so.StreamObjectError) and err.value.kafka_code == 56
        with pytest.raises(so.StreamObjectError):
            await st.logs.read(a, 0, 64 << 10)  # asked again: refused again, never cached
        assert values(await read_all(st, b)) == [b"b%06d" % i + b"." * 1000 for i in range(120)]
        status = st.status()
        assert status.corrupt_objects == 1 and status.corrupt_reads == 2
        assert victim in status.last_corruption


async def test_corrupt_read_ahead_block_does_not_spoil_the_good_block_before_it(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "plant", store, stream_object_bytes=1 << 20, upload_bytes=1 << 20) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 700, size=4000)  # ~2.8 MiB: one object of three 1 MiB blocks
    key = _objects_of(store, a)[0]
    index = so.read_index(store.objects[key])
    assert len(index) >= 2
    data = bytearray(store.objects[key])
    data[index[1].position + 10] ^= 0xFF  # damage the SECOND block only
    store.objects[key] = bytes(data)
    async with running_tier(tmp_path / "cold", store) as st:
        first = await st.logs.read(a, 0, 64 << 10)  # the first block reads (read-ahead sees the damage)
        assert first.batches
        with pytest.raises(so.StreamObjectError):
            await read_all(st, a)
        assert st.status().corrupt_reads == 1


async def test_compaction_leaves_a_corrupt_object_out_and_goes_on(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "plant", store, compact_min_objects=3, compact_small_bytes=1 << 20) as st:
        a = await st.logs.create_stream("a-0")
        for k in range(5):
            await produce(st, a, 10, tag=b"%d" % k)
            await st.tier.upload_all()
        keys = _objects_of(store, a)
        assert len(keys) == 5
        _flip_in_first_block(store, keys[0])
        with trio.fail_after(30):
            while await st.tier.compact():
                pass
        # The corrupt object was found and left as it is; the other four were merged.
        assert st.tier.corrupt and list(st.tier.corrupt) == [keys[0]]
        assert st.status().corrupt_objects == 1
        assert len(st.tier.manifest.objects) == 2
        assert st.tier.compactions >= 1


async def test_log_compaction_reports_a_corrupt_object_and_maintenance_goes_on(tmp_path):
    from appliance.kafka import records
    from appliance.storage.key_compaction import CompactionPolicy
    from appliance.storage.tier import RetentionPolicy
    from tests.storage.conftest import NOW

    store = MemoryObjectStore()
    async with running_tier(tmp_path / "plant", store, stream_object_bytes=4 << 10) as st:
        sid = await st.logs.create_stream("plc-state-0")
        for r in range(3):
            for k in range(0, 20, 5):
                recs = [(b"key-%02d" % i, b"r%d" % r + b"." * 300, []) for i in range(k, k + 5)]
                await st.logs.append(sid, records.build_batch(recs, timestamp_ms=NOW), now_ms=NOW).durable()
            await st.tier.upload_all()
        victim = _objects_of(store, sid)[0]
        _flip_in_first_block(store, victim)
        policy = {sid: RetentionPolicy(-1, -1, None, CompactionPolicy())}
        st.set_retention_source(lambda: policy)
        passes = st.tier._passes
        await st.tier.maintain()
        # Before: the StreamObjectError escaped the pass ("maintenance_failed" every pass, and the
        # merge, garbage collection and manifest pruning after it never ran again).
        assert st.tier._passes == passes + 1 and st.tier.last_error is None
        assert list(st.tier.corrupt) == [victim] and st.status().corrupt_objects == 1
        assert st.tier.key_compactor.runs == 0 and victim in store.objects


async def test_a_failed_maintenance_pass_leaves_no_error_once_a_pass_succeeds(tmp_path):
    # Found by the long outage scenario: a maintenance pass during an outage set last_error, which
    # nothing cleared, so `health` stayed "error" after the store came back.
    from appliance.storage.objects import FaultyObjectStore

    store = FaultyObjectStore(MemoryObjectStore())
    async with running_tier(tmp_path / "d", store) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 5)
        await st.tier.upload_all()
        store.outage = True
        await st.tier.maintain()
        assert st.status().last_error.startswith("maintenance: ")
        store.outage = False
        await st.tier.maintain()
        assert st.status().last_error is None
