"""A fault-injecting wrapper for tests: fail calls, add latency, simulate an outage.

    store = FaultyObjectStore(MemoryObjectStore())
    store.fail_next(3, ops={"put"})   # the next 3 puts raise ObjectStoreError
    store.outage = True               # every call fails until set back to False
    store.latency = 0.05              # seconds added to every call
"""

from __future__ import annotations

import trio

from appliance.storage.objects.port import ObjectInfo, ObjectStore, ObjectStoreError, Value

OPS = frozenset({"put", "put_if_absent", "get", "list", "delete"})


class FaultyObjectStore:
    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = f"faulty+{inner.url}"
        self.outage = False
        self.latency = 0.0
        self._fail: dict[str, int] = {}
        self.failures = 0  # calls failed on purpose

    def fail_next(self, count: int, ops: set[str] | frozenset[str] = OPS) -> None:
        for op in ops:
            self._fail[op] = self._fail.get(op, 0) + count

    def clear_failures(self) -> None:
        """Forget failures still queued by fail_next."""
        self._fail.clear()

    async def _enter(self, op: str) -> None:
        if self.latency:
            await trio.sleep(self.latency)
        if self.outage:
            self.failures += 1
            raise ObjectStoreError(f"injected outage: {op} refused")
        left = self._fail.get(op, 0)
        if left > 0:
            self._fail[op] = left - 1
            self.failures += 1
            raise ObjectStoreError(f"injected failure: {op}")

    async def put(self, key: str, data: Value) -> None:
        await self._enter("put")
        await self.inner.put(key, data)

    async def put_if_absent(self, key: str, data: Value) -> bool:
        await self._enter("put_if_absent")
        return await self.inner.put_if_absent(key, data)

    async def get(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        await self._enter("get")
        return await self.inner.get(key, start, length)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        await self._enter("list")
        return await self.inner.list(prefix)

    async def delete(self, key: str) -> None:
        await self._enter("delete")
        await self.inner.delete(key)

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = ["FaultyObjectStore"]
