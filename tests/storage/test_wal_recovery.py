"""Crash recovery: kill -9 mid-load, torn and garbled segment tails."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import trio

from appliance.kafka.records import build_batch, read_header, with_base_offset
from appliance.storage import wal_format as fmt
from appliance.storage.local import open_local_storage
from appliance.storage.segments import list_segments

from .conftest import NOW, batch, running, settings

ROOT = Path(__file__).resolve().parents[2]


def numbered_batch(task: int, i: int) -> bytes:
    return build_batch([(b"t%d" % task, b"%d-%d-" % (task, i) + b"p" * 40, [])] * 16, timestamp_ms=NOW + i)


CHILD = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from appliance.config import StorageSettings
    from appliance.storage.local import open_local_storage
    from tests.storage.test_wal_recovery import numbered_batch

    async def main(path):
        st = open_local_storage(Path(path), StorageSettings(wal_segment_size=64 << 10))
        async with trio.open_nursery() as nursery:
            await nursery.start(st.run)
            sid = await st.logs.create_stream("t-0")
            print("ready", sid, flush=True)

            async def producer(task):
                for i in range(100000):
                    r = await st.logs.append(sid, numbered_batch(task, i), now_ms=0).durable()
                    print("ack", task, i, r.base_offset, flush=True)

            for task in range(8):
                nursery.start_soon(producer, task)

    trio.run(main, sys.argv[1])
    """
)


async def test_kill_9_keeps_every_acknowledged_append(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    acks: dict[int, tuple[int, int]] = {}
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline().split()
        assert header[0] == b"ready", header
        sid = int(header[1])
        while len(acks) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the child died early"
            _, task, i, base = line.split()
            acks[int(base)] = (int(task), int(i))
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()  # acks printed before the kill still count
        for line in rest.splitlines():
            parts = line.split()
            if len(parts) == 4:
                acks[int(parts[3])] = (int(parts[1]), int(parts[2]))
    finally:
        proc.kill()
        proc.wait()
    assert len(acks) >= 400

    async with running(tmp_path) as st:
        logs = st.logs
        hw = logs.offsets(sid).high_watermark
        assert hw >= max(acks) + 16
        read = await logs.read(sid, 0, 1 << 30)
        by_base = {read_header(b).base_offset: b for b in read.batches}
        assert sorted(by_base) == list(range(0, hw, 16))  # dense, nothing half-there
        for base, (task, i) in acks.items():
            assert by_base[base] == with_base_offset(numbered_batch(task, i), base)
        r = await logs.append(sid, batch(), now_ms=NOW).durable()
        assert r.base_offset == hw  # offsets continue right after the last durable batch


async def _fill(path: Path, count: int) -> tuple[int, list[bytes]]:
    """Append `count` batches, then stop without close (like a crash); return what was stored."""
    storage = open_local_storage(path, settings(wal_segment_size=1 << 30))
    stored = []
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        sid = await storage.logs.create_stream("t-0")
        for i in range(count):
            b = batch(3, value=b"r%d" % i)
            r = await storage.logs.append(sid, b, now_ms=NOW).durable()
            stored.append(with_base_offset(b, r.base_offset))
        storage.abandon()
        nursery.cancel_scope.cancel()
    return sid, stored


def _batch_record_ends(segment: Path) -> list[tuple[int, int]]:
    """(start, end) of every BATCH record in the segment."""
    res = fmt.ScanResult()
    return [(r.pos, r.pos + r.size) for r in fmt.scan(segment.read_bytes(), res) if r.type == fmt.REC_BATCH]


async def test_torn_tail_is_truncated_at_the_last_intact_record(tmp_path, caplog):
    source = tmp_path / "source"
    sid, stored = await _fill(source, 30)
    (_, segment), = [s for s in list_segments(source / "wal") if _batch_record_ends(s[1])]
    spans = _batch_record_ends(segment)
    assert len(spans) == 30
    rng = random.Random(7)
    for trial in range(12):
        work = tmp_path / f"trial{trial}"
        shutil.copytree(source, work)
        seg = work / "wal" / segment.name
        size = seg.stat().st_size
        if trial % 2:
            cut = rng.randrange(spans[0][0], size)  # truncate anywhere in the batch records
            os.truncate(seg, cut)
            intact = sum(1 for _, end in spans if end <= cut)
            torn = cut not in {end for _, end in spans}
        else:
            k = rng.randrange(len(spans))  # garble some bytes of record k
            start, end = spans[k]
            data = bytearray(seg.read_bytes())
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(start, end)] ^= 0xFF
            seg.write_bytes(bytes(data))
            intact, torn = k, True
        caplog.clear()
        async with running(work) as st:
            read = await st.logs.read(sid, 0, 1 << 30)
            assert read.batches == stored[:intact], trial
            assert st.logs.offsets(sid).high_watermark == 3 * intact
            r = await st.logs.append(sid, batch(), now_ms=NOW).durable()
            assert r.base_offset == 3 * intact
        if torn:
            assert any("wal_tail_truncated" in rec.getMessage() for rec in caplog.records), trial
        # the repair is itself durable: a second reopen sees the same data plus the new append
        async with running(work) as st:
            assert st.logs.offsets(sid).high_watermark == 3 * intact + 1


async def test_reopen_without_close_keeps_durable_appends(tmp_path):
    sid, stored = await _fill(tmp_path, 5)
    async with running(tmp_path) as st:
        assert (await st.logs.read(sid, 0, 1 << 20)).batches == stored
