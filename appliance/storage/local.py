"""Local storage: the WAL-backed LogStore plus the journal-backed MetaStore under one data dir.

WAL-only (no object-storage tier): used by WAL tests and benchmarks. The appliance runs
`appliance.storage.tiered.open_storage`, which adds the object tier on top of the same parts.

    storage = open_local_storage(data_dir, settings.storage)   # blocking: crash recovery
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)                         # group-commit flusher
        ...                                                      # storage.logs / storage.meta
        await storage.close()                                    # flush, release files
        nursery.cancel_scope.cancel()

Layout: `<data-dir>/wal/` (segments) and `<data-dir>/meta/` (snapshot + journal).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from appliance.config import StorageSettings
from appliance.logs import get_logger
from appliance.storage.meta import LocalMetaStore
from appliance.storage.ports import StorageStatus
from appliance.storage.wal import WalLogStore

log = get_logger("storage")


class LocalStorage:
    """Implements the `Storage` protocol with everything on the local disk."""

    def __init__(self, logs: WalLogStore, meta: LocalMetaStore, clock: Callable[[], float]) -> None:
        self.logs = logs
        self.meta = meta
        self._clock = clock
        self._closed = False

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the WAL group-commit flusher until close() or cancellation."""
        await self.logs.run_flusher(task_status=task_status)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.logs.close()
        await self.meta.close()
        log.info("storage_closed", **self.logs.stats())

    def abandon(self) -> None:
        """Drop file handles without flushing: what a crash leaves behind (tests only)."""
        self._closed = True
        self.logs.abandon()
        self.meta.abandon()

    def status(self) -> StorageStatus:
        logs = self.logs
        return StorageStatus(
            wal_bytes=logs.wal_bytes,
            wal_segments=logs.wal_segments,
            unuploaded_bytes=logs.wal_bytes,  # no object-storage tier yet: everything is local only
            durable_appends=logs.durable_appends,
            fsyncs=logs.fsyncs + self.meta.fsyncs,
            last_error=logs.last_error or self.meta.last_error,
        )


def open_local_storage(
    data_dir: Path, settings: StorageSettings, *, clock: Callable[[], float] | None = None
) -> LocalStorage:
    """Open (creating if needed) and recover the storage under `data_dir`. Synchronous and
    blocking (it replays the WAL); call it before starting the trio nursery, or through
    `trio.to_thread.run_sync` if the event loop must stay responsive meanwhile."""
    started = time.monotonic()
    data_dir = Path(data_dir)
    logs = WalLogStore.open(data_dir / "wal", settings)
    meta = LocalMetaStore.open(data_dir / "meta", fsync=settings.fsync, compact_bytes=settings.meta_compact_bytes)
    log.info("storage_opened", data_dir=str(data_dir), seconds=round(time.monotonic() - started, 3))
    return LocalStorage(logs, meta, clock or time.time)


__all__ = ["LocalStorage", "open_local_storage"]
