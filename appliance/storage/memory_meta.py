"""An in-memory MetaStore: the port's contract without a disk.

Used by tests and by the in-memory storage profile. Writes are "durable" as soon as they return;
values are deep-copied through msgpack on the way in and out, so callers cannot mutate stored
state by accident and non-msgpack-able values fail here as they would in the durable store.
Tests that need to see a write's effect across a "restart" build a second consumer on the same
MemoryMetaStore instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import trio


def _copy(value: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False, strict_map_key=False)


class MemoryMetaStore:
    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._counters: dict[str, int] = {}
        self.writes = 0  # number of put/put_many calls, for tests and metrics

    def get(self, namespace: str, key: str) -> Any | None:
        value = self._data.get(namespace, {}).get(key)
        return None if value is None else _copy(value)

    def items(self, namespace: str) -> Mapping[str, Any]:
        return {k: _copy(v) for k, v in self._data.get(namespace, {}).items()}

    async def put(self, namespace: str, key: str, value: Any | None) -> None:
        await self.put_many(namespace, {key: value})

    async def put_many(self, namespace: str, entries: Mapping[str, Any | None]) -> None:
        copies = {k: (None if v is None else _copy(v)) for k, v in entries.items()}
        # Applied in call order (as a log-structured store would), then yield as a real store
        # does while it syncs, so callers cannot rely on put_many never switching tasks.
        ns = self._data.setdefault(namespace, {})
        for key, value in copies.items():
            if value is None:
                ns.pop(key, None)
            else:
                ns[key] = value
        self.writes += 1
        await trio.lowlevel.checkpoint()

    async def allocate(self, counter: str, count: int = 1) -> int:
        if count < 1:
            raise ValueError("count must be >= 1")
        first = self._counters.get(counter, 0)
        self._counters[counter] = first + count
        await trio.lowlevel.checkpoint()
        return first
