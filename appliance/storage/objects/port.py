"""The object-store port: the five calls the object-storage tier needs, nothing more.

Keys are relative ("manifest/00000000000000000007.mf", "data/..."); each implementation maps
them below its own root (a directory, an S3 bucket + prefix). Values are whole objects: they are
written once and never modified in place (put replaces, put_if_absent creates or refuses).
A value is `bytes` or a `Body`: the object as the buffers it already sits in (record batches
from the WAL cache), so a store that can write them as they are (the local directory: one
gather write) never joins tens of MiB into a fresh buffer first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from appliance.errors import StorageError


class ObjectStoreError(StorageError):
    """The object store failed or is unreachable (retriable)."""


class ObjectNotFoundError(ObjectStoreError):
    """No object under that key."""


class Body:
    """An object's bytes as consecutive buffers; len() is its size, bytes() joins it."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: Sequence[bytes | memoryview]) -> None:
        self.parts = list(parts)
        self.size = sum(map(len, self.parts))

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


Value = bytes | Body


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


@runtime_checkable
class ObjectStore(Protocol):
    url: str  # where the objects live, for logs and status (never holds credentials)

    async def put(self, key: str, data: Value) -> None:
        """Create or replace the object, durably."""
        ...

    async def put_if_absent(self, key: str, data: Value) -> bool:
        """Create the object only if no object has that key; False (and no change) if one has."""
        ...

    async def get(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        """The object's bytes [start, start+length) (to the end when length is None).
        Raises ObjectNotFoundError when the key does not exist."""
        ...

    async def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...

    async def aclose(self) -> None: ...


__all__ = ["Body", "Value", "ObjectInfo", "ObjectNotFoundError", "ObjectStore", "ObjectStoreError"]
