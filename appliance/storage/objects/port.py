"""The object-store port: the five calls the object-storage tier needs, nothing more.

Keys are relative ("manifest/00000000000000000007.mf", "data/..."); each implementation maps
them below its own root (a directory, an S3 bucket + prefix). Values are whole objects: they are
written once and never modified in place (put replaces, put_if_absent creates or refuses).
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


def whole(data: bytes | Sequence[bytes]) -> bytes:
    """`put` data as one bytes object (joined when given as parts)."""
    return bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else b"".join(data)


def size_of(data: bytes | Sequence[bytes]) -> int:
    return len(data) if isinstance(data, (bytes, bytearray, memoryview)) else sum(len(p) for p in data)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


@runtime_checkable
class ObjectStore(Protocol):
    url: str  # where the objects live, for logs and status (never holds credentials)

    async def put(self, key: str, data: bytes | Sequence[bytes]) -> None:
        """Create or replace the object, durably. `data`: its bytes, or its parts in order (a store
        that can writes them back to back without joining them)."""
        ...

    async def put_if_absent(self, key: str, data: bytes) -> bool:
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


__all__ = ["ObjectInfo", "ObjectNotFoundError", "ObjectStore", "ObjectStoreError", "size_of", "whole"]
