"""MetaStore: durability, group commit, compaction, torn journal, failures."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from appliance.errors import StorageError
from appliance.storage.meta import LocalMetaStore

from .test_wal import FlakyFsync


async def test_values_survive_reopen(tmp_path):
    meta = LocalMetaStore.open(tmp_path)
    await meta.put("topics", "orders", {"partitions": 3, "config": {"retention.ms": 1000}, "blob": b"\x00\x01"})
    await meta.put_many("offsets", {"g/orders/0": 17, "g/orders/1": 4})
    await meta.put("offsets", "g/orders/1", None)  # None deletes
    assert meta.get("offsets", "g/orders/1") is None
    await meta.close()
    await meta.close()  # idempotent
    meta = LocalMetaStore.open(tmp_path)
    assert meta.get("topics", "orders") == {"partitions": 3, "config": {"retention.ms": 1000}, "blob": b"\x00\x01"}
    assert dict(meta.items("offsets")) == {"g/orders/0": 17}
    assert meta.get("nope", "x") is None and dict(meta.items("empty")) == {}
    with pytest.raises(TypeError):
        await meta.put("topics", "bad", object())
    await meta.close()


async def test_concurrent_writes_share_fsyncs_and_allocations_never_overlap(tmp_path):
    meta = LocalMetaStore.open(tmp_path)
    got: list[int] = []

    async def worker(k: int) -> None:
        for j in range(10):
            await meta.put("n", f"{k}/{j}", j)
            got.append(await meta.allocate("producer_id", 2))

    async with trio.open_nursery() as nursery:
        for k in range(20):
            nursery.start_soon(worker, k)
    assert len(meta.items("n")) == 200
    assert sorted(got) == list(range(1, 401, 2))
    assert meta.fsyncs < 200  # 400 writes from 20 concurrent writers
    await meta.close()
    meta = LocalMetaStore.open(tmp_path)
    assert await meta.allocate("producer_id") == 401
    await meta.close()


async def test_compaction_writes_snapshot_and_keeps_everything(tmp_path):
    meta = LocalMetaStore.open(tmp_path, compact_bytes=4096)
    for i in range(300):
        await meta.put("ns", f"k{i % 50}", {"i": i, "pad": "x" * 20})
    assert meta.compactions >= 3
    assert (tmp_path / "snapshot").exists()
    journals = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("journal-"))
    assert len(journals) == 1
    await meta.close()
    meta = LocalMetaStore.open(tmp_path, compact_bytes=4096)
    assert {k: v["i"] for k, v in meta.items("ns").items()} == {f"k{j}": 250 + j for j in range(50)}
    await meta.close()


async def test_torn_journal_tail_is_tolerated(tmp_path, caplog):
    meta = LocalMetaStore.open(tmp_path)
    for i in range(10):
        await meta.put("ns", f"k{i}", i)
    meta.abandon()
    (journal,) = [p for p in tmp_path.iterdir() if p.name.startswith("journal-")]
    size = journal.stat().st_size
    os.truncate(journal, size - 3)  # the last record is torn
    with open(journal, "ab") as fh:
        fh.write(b"\xde\xad")
    meta = LocalMetaStore.open(tmp_path)
    assert dict(meta.items("ns")) == {f"k{i}": i for i in range(9)}
    assert any("meta_journal_tail_truncated" in r.getMessage() for r in caplog.records)
    await meta.put("ns", "k9", 9)
    await meta.close()
    meta = LocalMetaStore.open(tmp_path)
    assert meta.get("ns", "k9") == 9 and len(meta.items("ns")) == 10
    await meta.close()


async def test_failed_write_raises_and_changes_nothing(tmp_path, monkeypatch):
    meta = LocalMetaStore.open(tmp_path)
    await meta.put("ns", "a", 1)
    FlakyFsync(monkeypatch, errno.EIO)
    with pytest.raises(StorageError):
        await meta.put("ns", "a", 2)
    assert meta.get("ns", "a") == 1
    await meta.put("ns", "b", 3)
    await meta.close()
    meta = LocalMetaStore.open(tmp_path)
    assert dict(meta.items("ns")) == {"a": 1, "b": 3}  # the failed frame was cut off before the next write
    await meta.close()
