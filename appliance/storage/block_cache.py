"""Reading stream objects: a bounded LRU of object byte ranges (blocks) with read-ahead.

Memory stays bounded: the block cache holds at most `capacity` bytes (plus the blocks of the one
read in progress), the index cache a fixed number of object indexes. A miss fetches the wanted
block and up to `readahead` following blocks of the same stream in ONE ranged GET (a stream's
blocks are contiguous in an object), so a consumer reading forward mostly hits the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from appliance.storage import stream_object as so
from appliance.storage.objects.port import ObjectStore

INDEX_TAIL = 64 << 10  # first tail GET; covers footer + index of objects up to ~1300 blocks
READAHEAD_BYTES = 8 << 20  # read-ahead never fetches more than this in one GET


class BlockCache:
    def __init__(self, store: ObjectStore, capacity: int, *, readahead: int = 2, index_entries: int = 4096) -> None:
        self.store = store
        self.capacity = capacity
        self.readahead = readahead
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._indexes: OrderedDict[str, list[so.BlockEntry]] = OrderedDict()
        self._index_entries = index_entries
        self.hits = 0
        self.misses = 0

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    async def index(self, key: str, size: int) -> list[so.BlockEntry]:
        idx = self._indexes.get(key)
        if idx is not None:
            self._indexes.move_to_end(key)
            return idx
        try:
            idx = await self._read_index(key, size)
        except so.StreamObjectError as e:
            e.key = key
            raise
        self._indexes[key] = idx
        while len(self._indexes) > self._index_entries:
            self._indexes.popitem(last=False)
        return idx

    async def _read_index(self, key: str, size: int) -> list[so.BlockEntry]:
        tail_len = min(size, INDEX_TAIL)
        tail = await self.store.get(key, size - tail_len, tail_len)
        if len(tail) != tail_len:  # a truncated object: its footer is not where the manifest says
            raise so.StreamObjectError(f"object holds fewer bytes than its {size} in the manifest")
        footer = so.decode_footer(tail)
        if footer.index_position + footer.index_length > size - so.FOOTER_SIZE:
            raise so.StreamObjectError("object index runs past the footer")
        start = footer.index_position - (size - tail_len)
        if start >= 0:
            raw = tail[start : start + footer.index_length]
        else:
            raw = await self.store.get(key, footer.index_position, footer.index_length)
        return so.decode_index(raw, footer)
    def forget(self, key: str) -> None:
        self._indexes.pop(key, None)
        for k in [k for k in self._blocks if k[0] == key]:
            self._bytes -= len(self._blocks.pop(k))

    async def block(self, key: str, blocks: Sequence[so.BlockEntry], i: int) -> bytes:
        """Block `blocks[i]` of object `key` (blocks: one stream's entries, in object order)."""
        entry = blocks[i]
        ck = (key, entry.position)
        data = self._blocks.get(ck)
        if data is not None:
            self._blocks.move_to_end(ck)
            self.hits += 1
            return data
        self.misses += 1
        j = i + 1
        end = entry.position + entry.length
        while (j < len(blocks) and j <= i + self.readahead and blocks[j].position == end
               and end + blocks[j].length - entry.position <= min(READAHEAD_BYTES, self.capacity // 2)
               and (key, blocks[j].position) not in self._blocks):
            end += blocks[j].length
            j += 1
        raw = await self.store.get(key, entry.position, end - entry.position)
        for k, e in enumerate(blocks[i:j]):
            part = raw[e.position - entry.position : e.position - entry.position + e.length]
            try:
                so.check_block(e, part)
            except so.StreamObjectError as err:
                if k == 0:
                    err.key = key
                    raise
                break  # a damaged read-ahead block: not cached, reported when it is asked for
            self._put((key, e.position), part)
        return raw if j == i + 1 else raw[: entry.length]

    def _put(self, ck: tuple[str, int], data: bytes) -> None:
        old = self._blocks.pop(ck, None)
        if old is not None:
            self._bytes -= len(old)
        self._blocks[ck] = data
        self._bytes += len(data)
        while self._bytes > self.capacity and self._blocks:
            _k, gone = self._blocks.popitem(last=False)
            self._bytes -= len(gone)


__all__ = ["BlockCache"]
