"""Counts requests by type and bytes moved, for status, admin views and the benchmark."""

from __future__ import annotations

from appliance.storage.objects.port import ObjectInfo, ObjectStore, Value


class MeteredObjectStore:
    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.requests = {"put": 0, "get": 0, "list": 0, "delete": 0}
        self.errors = 0
        self.bytes_put = 0
        self.bytes_got = 0

    async def put(self, key: str, data: Value) -> None:
        self.requests["put"] += 1
        try:
            await self.inner.put(key, data)
        except Exception:
            self.errors += 1
            raise
        self.bytes_put += len(data)

    async def put_if_absent(self, key: str, data: Value) -> bool:
        self.requests["put"] += 1
        try:
            created = await self.inner.put_if_absent(key, data)
        except Exception:
            self.errors += 1
            raise
        self.bytes_put += len(data) if created else 0
        return created

    async def get(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        self.requests["get"] += 1
        try:
            data = await self.inner.get(key, start, length)
        except Exception:
            self.errors += 1
            raise
        self.bytes_got += len(data)
        return data

    async def list(self, prefix: str) -> list[ObjectInfo]:
        self.requests["list"] += 1
        try:
            return await self.inner.list(prefix)
        except Exception:
            self.errors += 1
            raise

    async def delete(self, key: str) -> None:
        self.requests["delete"] += 1
        try:
            await self.inner.delete(key)
        except Exception:
            self.errors += 1
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = ["MeteredObjectStore"]
