"""Helpers for storage tests: real files under tmp_path, a running flusher."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from appliance.config import StorageSettings
from appliance.kafka.records import build_batch
from appliance.storage.local import LocalStorage, open_local_storage

NOW = 1_700_000_000_000


def settings(**overrides: Any) -> StorageSettings:
    return dataclasses.replace(StorageSettings(), **overrides)


def batch(n: int = 1, *, value: bytes = b"v", ts: int = NOW, pid: int = -1, epoch: int = -1, seq: int = -1) -> bytes:
    """A batch of n records; values carry their index so batches differ."""
    return build_batch(
        [(b"k%d" % i, value + b"-%d" % i, []) for i in range(n)],
        timestamp_ms=ts, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
    )


@asynccontextmanager
async def running(path: Path, **overrides: Any) -> AsyncIterator[LocalStorage]:
    storage = open_local_storage(path, settings(**overrides))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        try:
            yield storage
        finally:
            await storage.close()
            nursery.cancel_scope.cancel()
