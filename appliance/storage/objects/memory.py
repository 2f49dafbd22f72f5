"""An in-memory object store: the port's contract without IO (tests, benchmarks)."""

from __future__ import annotations

import trio

from appliance.storage.objects.port import ObjectInfo, ObjectNotFoundError, Value


class MemoryObjectStore:
    def __init__(self) -> None:
        self.url = "memory://"
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, data: Value) -> None:
        await trio.lowlevel.checkpoint()
        self.objects[key] = bytes(data)

    async def put_if_absent(self, key: str, data: Value) -> bool:
        await trio.lowlevel.checkpoint()
        if key in self.objects:
            return False
        self.objects[key] = bytes(data)
        return True

    async def get(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        try:
            data = self.objects[key]
        except KeyError:
            raise ObjectNotFoundError(f"no object {key!r}") from None
        return data[start:] if length is None else data[start : start + length]

    async def list(self, prefix: str) -> list[ObjectInfo]:
        await trio.lowlevel.checkpoint()
        return [ObjectInfo(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    async def delete(self, key: str) -> None:
        await trio.lowlevel.checkpoint()
        self.objects.pop(key, None)

    async def aclose(self) -> None:
        pass


__all__ = ["MemoryObjectStore"]
