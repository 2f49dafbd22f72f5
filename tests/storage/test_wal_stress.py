"""Randomised rounds of concurrent appends, injected fsync failures, crashes and reopens."""

from __future__ import annotations

import errno
import os
import random

import trio

from appliance.errors import StorageError
from appliance.kafka.records import read_header, with_base_offset
from appliance.storage.local import open_local_storage

from .conftest import NOW, batch, settings


async def test_acknowledged_data_survives_failures_and_crashes(tmp_path, monkeypatch):
    rng = random.Random(1234)
    real_fsync = os.fsync

    def flaky_fsync(fd: int) -> None:
        if rng.random() < 0.08:
            raise OSError(errno.EIO, "injected")
        real_fsync(fd)

    acked: dict[tuple[int, int], bytes] = {}  # (stream, base) -> stored bytes
    sids: list[int] = []
    last_error = None
    for round_no in range(5):
        storage = open_local_storage(tmp_path, settings(wal_segment_size=16 << 10, log_cache_size=8 << 10))
        logs = storage.logs
        # everything acknowledged so far is there, byte for byte, with dense offsets
        for sid in sids:
            read = await logs.read(sid, 0, 1 << 30)
            bases = [read_header(b).base_offset for b in read.batches]
            assert bases == sorted(bases) and read.high_watermark == logs.offsets(sid).log_end
            stored = dict(zip(bases, read.batches, strict=True))
            for (s, base), data in acked.items():
                if s == sid:
                    assert stored[base] == data, (round_no, sid, base)
        if round_no == 4:
            await storage.close()
            break
        async with trio.open_nursery() as nursery:
            await nursery.start(storage.run)
            monkeypatch.setattr(os, "fsync", flaky_fsync)
            while len(sids) < 3:
                try:
                    sids.append(await logs.create_stream(f"s-{len(sids)}"))
                except StorageError:
                    pass

            async def producer(k: int, round_no: int = round_no, logs=logs) -> None:
                for i in range(40):
                    sid = sids[(k + i) % len(sids)]
                    data = batch(rng.randint(1, 5), value=b"%d-%d-%d" % (round_no, k, i))
                    try:
                        r = await logs.append(sid, data, now_ms=NOW).durable()
                    except StorageError:
                        continue
                    acked[(sid, r.base_offset)] = with_base_offset(data, r.base_offset)

            with trio.fail_after(30):
                async with trio.open_nursery() as inner:
                    for k in range(6):
                        inner.start_soon(producer, k)
            monkeypatch.setattr(os, "fsync", real_fsync)
            last_error = last_error or storage.status().last_error
            if round_no % 2:
                await storage.close()
            else:
                storage.abandon()  # crash: no close
            nursery.cancel_scope.cancel()
    assert len(acked) > 500
    assert last_error is not None  # failures really were injected


async def test_status_of_a_fresh_store(tmp_path):
    storage = open_local_storage(tmp_path, settings())
    status = storage.status()
    assert (status.wal_segments, status.durable_appends, status.last_error) == (1, 0, None)
    await storage.close()
