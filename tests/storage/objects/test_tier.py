"""The object tier end to end in-process: upload, trim, read back, recovery, fencing, outages."""

from __future__ import annotations

import pytest
import trio

from appliance.errors import StorageError, StorageFullError
from appliance.kafka.records import with_base_offset
from appliance.storage import stream_object as so
from appliance.storage.manifest import FencedError, ManifestStore, manifest_key
from appliance.storage.objects import FaultyObjectStore, MemoryObjectStore
from appliance.storage.tier import encode_object
from tests.storage.conftest import batch
from tests.storage.objects.helpers import produce, read_all, running_tier, values


async def test_upload_trims_wal_and_reads_back_in_order(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "d", store) as st:
        a = await st.logs.create_stream("a-0")
        b = await st.logs.create_stream("b-0")
        await produce(st, a, 300, tag=b"a")
        await produce(st, b, 40, tag=b"b")
        await st.tier.upload_all()
        status = st.status()
        assert status.objects >= 2 and status.unuploaded_bytes == 0
        assert status.wal_bytes < 100 << 10, status  # ~340 KiB written, uploaded segments trimmed
        assert any(k.startswith("data/") for k in store.objects)
        got = values(await read_all(st, a))
        assert got == [b"a%06d" % i + b"." * 1000 for i in range(300)]
        assert values(await read_all(st, b, 17)) == [b"b%06d" % i + b"." * 1000 for i in range(17, 40)]
        info = st.logs.streams()[a]
        assert info.offsets.high_watermark == 300 and info.size_bytes > 300_000
        # Appends continue at the right offsets after trimming.
        assert await produce(st, a, 2, tag=b"z") == [300, 301]


async def test_plant_crash_recovery_replays_wal_above_manifest(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "d", store, close=False) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 150, tag=b"a", pid=7, epoch=0, seq=0)
        await st.tier.upload_all()
        uploaded = st.tier.manifest.streams[a].end
        # more data, acknowledged but never uploaded: only the WAL has it
        for i in range(150, 180):
            from tests.storage.conftest import batch

            await st.logs.append(a, batch(1, value=b"a%06d" % i + b"." * 1000, pid=7, epoch=0, seq=i), now_ms=0).durable()
    assert uploaded == 150
    async with running_tier(tmp_path / "d", store) as st:
        assert st.logs.offsets(a).high_watermark == 180
        assert values(await read_all(st, a)) == [b"a%06d" % i + b"." * 1000 for i in range(180)]
        # idempotence survives: the last batch again is a duplicate, the next sequence fits
        from appliance.errors import DuplicateBatchError
        from tests.storage.conftest import batch

        with pytest.raises(DuplicateBatchError):
            st.logs.append(a, batch(1, value=b"a000179" + b"." * 1000, pid=7, epoch=0, seq=179), now_ms=0)
        r = await st.logs.append(a, batch(1, value=b"next", pid=7, epoch=0, seq=180), now_ms=0).durable()
        assert r.base_offset == 180


async def test_cloud_recovery_from_the_bucket_alone(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "plant", store) as st:
        a = await st.logs.create_stream("orders-0")
        b = await st.logs.create_stream("orders-1")
        await produce(st, a, 120, tag=b"a", pid=9, epoch=2, seq=0)
        await produce(st, b, 5, tag=b"b")
        await st.logs.delete_records(b, 2)
        await st.meta.put("topics", "orders", {"v": 1, "streams": [a, b]})
        await st.meta.put("group_offsets", "g1", {"orders": {0: 77}})
    # close() uploaded the tail; now a node with an EMPTY data dir
    async with running_tier(tmp_path / "cloud", store) as st:
        assert st.meta.get("topics", "orders") == {"v": 1, "streams": [a, b]}
        assert st.meta.get("group_offsets", "g1") == {"orders": {0: 77}}
        assert {s.name for s in st.logs.streams().values()} == {"orders-0", "orders-1"}
        assert st.logs.offsets(b).log_start == 2 and st.logs.offsets(b).high_watermark == 5
        assert values(await read_all(st, a)) == [b"a%06d" % i + b"." * 1000 for i in range(120)]
        assert st.logs.producer_state(a)[9]["last_sequence"] == 119
        from appliance.errors import DuplicateBatchError
        from tests.storage.conftest import batch

        with pytest.raises(DuplicateBatchError):
            st.logs.append(a, batch(1, value=b"a000119" + b"." * 1000, pid=9, epoch=2, seq=119), now_ms=0)
        c = await st.logs.create_stream("new-0")
        assert c not in (a, b)


async def test_second_node_fences_the_first(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "one", store) as first:
        a = await first.logs.create_stream("a-0")
        await produce(first, a, 10)
        await first.tier.upload_all()
        async with running_tier(tmp_path / "two", store) as second:
            assert second.tier.manifests.epoch == first.tier.manifests.epoch + 1
            await produce(first, a, 1)  # not known yet: the WAL still takes it
            assert await first.tier.upload_round() is False
            assert first.status().fenced and "took over" in first.status().last_error
            with pytest.raises(StorageError, match="no longer writes"):
                first.logs.append(a, b"x" * 61, now_ms=0)
            assert values(await read_all(second, a)) == values(await read_all(first, a))[:10]


async def test_outage_backpressure_then_uploads_resume(tmp_path):
    store = FaultyObjectStore(MemoryObjectStore())
    async with running_tier(tmp_path / "d", store, wal_budget=400 << 10, upload_interval=0.05) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 50)
        store.outage = True
        acked = 50
        with pytest.raises(StorageFullError):
            for _ in range(1000):
                await produce(st, a, 1, tag=b"%d" % acked)
                acked += 1
        assert 300 < acked < 1000
        assert st.status().unuploaded_bytes > 0 and st.status().last_error
        store.outage = False
        with trio.fail_after(10):
            while st.status().unuploaded_bytes:
                await trio.sleep(0.02)
        await produce(st, a, 1)  # room again
        assert len(await read_all(st, a)) == acked + 1
        assert store.failures > 0


async def test_bounded_memory_cold_read(tmp_path):
    import tracemalloc

    store = MemoryObjectStore()
    async with running_tier(tmp_path / "d", store, stream_object_bytes=1 << 20, upload_bytes=1 << 20) as st:
        a = await st.logs.create_stream("a-0")
        for k in range(8):
            await produce(st, a, 256, size=4200, tag=b"%d" % k)
            await st.tier.upload_all()
        total = sum(len(v) for v in store.objects.values())
        assert total > 8 << 20
    async with running_tier(tmp_path / "d", store, block_cache_size=2 << 20) as st:
        tracemalloc.start()
        try:
            count = 0
            pos = 0
            hw = st.logs.offsets(a).high_watermark
            while pos < hw:
                res = await st.logs.read(a, pos, 64 << 10)
                count += len(res.batches)
                pos = int.from_bytes(res.batches[-1][:8], "big") + 1
            _cur, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == 2048
        assert peak < 6 << 20, peak  # 8+ MiB read through a 2 MiB cache
        assert st.tier.cache.cached_bytes <= 2 << 20
        assert st.tier.cache.hits > st.tier.cache.misses  # read-ahead


async def test_manifest_commit_after_lost_reply_is_not_fencing():
    store = MemoryObjectStore()
    ms = ManifestStore(store)
    m = await ms.claim(None, 0)
    await ms.commit(m.copy(), 1)
    ms.seq -= 1  # as if the reply to that create was lost
    await ms.commit(m.copy(), 2)
    assert ms.fenced_by is None and ms.seq == 3


async def test_crash_with_uploads_in_flight_then_recover(tmp_path):
    inner = MemoryObjectStore()
    store = FaultyObjectStore(inner)
    async with running_tier(tmp_path / "d", store, close=False) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 60, tag=b"a")
        await st.tier.upload_all()
        await produce(st, a, 60, tag=b"b")
        committed = {o.key for o in st.tier.manifest.objects.values()}
        store.fail_next(10_000, {"put_if_absent"})  # objects land, the manifest commit does not
        async with trio.open_nursery() as n:
            n.start_soon(st.tier.upload_round)
            with trio.fail_after(5):
                while not {k for k in inner.objects if k.startswith("data/")} - committed:
                    await trio.sleep(0.01)
            n.cancel_scope.cancel()  # the process dies between upload and commit
        orphans = {k for k in inner.objects if k.startswith("data/")} - committed
        assert orphans
    store.clear_failures()
    async with running_tier(tmp_path / "d", store) as st:
        got = values(await read_all(st, a))
        assert got == [b"a%06d" % i + b"." * 1000 for i in range(60)] + [b"b%06d" % i + b"." * 1000 for i in range(60)]
        await st.tier.upload_all()
        await st.tier.maintain()  # any half-done object of the dead process is collected
        referenced = {o.key for o in st.tier.manifest.objects.values()}
        assert {k for k in inner.objects if k.startswith("data/")} == referenced
        assert not orphans & referenced


async def test_plant_starts_while_its_store_is_down_and_claims_it_later(tmp_path):
    store = FaultyObjectStore(MemoryObjectStore())
    async with running_tier(tmp_path / "d", store) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 30, tag=b"a")
    store.outage = True
    async with running_tier(tmp_path / "d", store, offline_start_wait=0.3, upload_interval=0.05) as st:
        assert not st.tier.manifests.claimed
        await produce(st, a, 30, tag=b"b")  # acknowledged from the WAL while the store is down
        assert len(await read_all(st, a, 30)) == 30
        store.outage = False
        with trio.fail_after(10):
            while st.status().unuploaded_bytes:
                await trio.sleep(0.02)
        assert st.tier.manifests.claimed and not st.status().fenced
    async with running_tier(tmp_path / "cloud", store) as st:  # the bucket alone has all 60
        assert len(await read_all(st, a)) == 60


async def test_offline_start_claims_over_its_own_commit_whose_reply_was_lost(tmp_path):
    """A manifest commit can land in the bucket while its reply is lost to the outage (or the
    process dies before writing its cache): after a restart on the older cache, that manifest
    carries this node's own epoch and must not fence it (found by the outage fault scenario)."""
    inner = MemoryObjectStore()
    store = FaultyObjectStore(inner)
    async with running_tier(tmp_path / "d", store) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 20, tag=b"a")
    manifests = ManifestStore(inner)
    landed = (await manifests.load_latest()).copy()
    landed.seq += 1  # same epoch: written by the run above, its reply never seen
    assert await inner.put_if_absent(manifest_key(landed.seq), landed.encode())
    store.outage = True
    async with running_tier(tmp_path / "d", store, offline_start_wait=0.3, upload_interval=0.05) as st:
        await produce(st, a, 20, tag=b"b")
        store.outage = False
        with trio.fail_after(10):
            while st.status().unuploaded_bytes:
                await trio.sleep(0.02)
        assert st.tier.manifests.claimed and not st.status().fenced
        assert st.tier.manifests.epoch == landed.epoch + 1
    async with running_tier(tmp_path / "cloud", store) as st:  # the bucket alone has all 40
        got = values(await read_all(st, a))
        assert got == [b"a%06d" % i + b"." * 1000 for i in range(20)] + [b"b%06d" % i + b"." * 1000 for i in range(20)]


async def test_offline_started_node_is_fenced_if_the_bucket_moved_on(tmp_path):
    inner = MemoryObjectStore()
    store = FaultyObjectStore(inner)
    async with running_tier(tmp_path / "d", store) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 5)
    store.outage = True  # this node cannot reach the bucket...
    async with running_tier(tmp_path / "d", store, offline_start_wait=0.3, upload_interval=0.05) as st:
        async with running_tier(tmp_path / "other", inner):
            pass  # ...while another node takes it over
        store.outage = False
        with trio.fail_after(10):
            while not st.status().fenced:
                await trio.sleep(0.02)
        assert "took over" in st.status().last_error
        with pytest.raises(StorageError, match="no longer writes"):
            await produce(st, a, 1)


async def test_store_outage_is_reported_while_it_lasts(tmp_path):
    """status().store_error says the object store is failing (the admin warnings read it) and
    clears once a call succeeds again, with last_error."""
    store = FaultyObjectStore(MemoryObjectStore())
    async with running_tier(tmp_path / "d", store, upload_interval=0.05) as st:
        a = await st.logs.create_stream("a-0")
        await produce(st, a, 5)
        assert st.status().store_error is None and st.status().store_error_s == 0
        store.outage = True
        await produce(st, a, 5)
        with trio.fail_after(10):
            while st.status().store_error is None:
                await trio.sleep(0.02)
        await trio.sleep(0.1)
        down = st.status()
        assert "injected outage" in down.store_error and down.store_error_s > 0 and down.last_error
        store.outage = False
        with trio.fail_after(10):
            while st.status().unuploaded_bytes or st.status().store_error:
                await trio.sleep(0.02)
        assert st.status().last_error is None and st.status().store_error_s == 0


async def test_fencing_probe_ignores_this_nodes_own_commit_in_flight():
    """The maintenance pass probes for manifest seq+1 beside an upload whose commit may just have
    written it (the reply not yet back): that manifest has our epoch and must not fence us;
    one with another epoch does."""
    store = MemoryObjectStore()
    ours = ManifestStore(store)
    claimed = await ours.claim(None, now_ms=1)
    in_flight = claimed.copy()
    in_flight.seq += 1
    assert await store.put_if_absent(manifest_key(in_flight.seq), in_flight.encode())
    await ours.check_fenced()  # our own commit: no FencedError
    rival = ManifestStore(store)
    await rival.claim(await rival.load_latest(), now_ms=2)
    ours.seq = in_flight.seq  # the commit's reply arrives; the rival's claim is next
    with pytest.raises(FencedError, match="took over"):
        await ours.check_fenced()


async def test_an_object_is_encoded_a_block_at_a_time_letting_other_tasks_run():
    streams = [(sid, [with_base_offset(batch(2, value=b"%d" % i), first + 2 * i) for i in range(300)])
               for sid, first in ((7, 0), (9, 5000))]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        before = ticks
        body, index = await encode_object(streams, block_size=2000)
        during = ticks - before
        nursery.cancel_scope.cancel()
    data, expected = so.encode_object(streams, block_size=2000)
    assert bytes(body) == data and index == expected  # the same object as the one-go encoder
    # the ticker ran between every two blocks (trio orders a batch of runnable tasks at random,
    # so whether it also ran after the last block varies)
    assert len(index) > 10 and during >= len(index) - 1
