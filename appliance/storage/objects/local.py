"""A local-directory object store (the embedded default, `<data-dir>/objects`).

Each key is a file below the root ("/" in keys makes subdirectories). Writes go to a temporary
file in the same directory, are fsynced, then renamed into place (put) or hard-linked into
place (put_if_absent: link(2) fails atomically when the name exists), and the directory is
fsynced, so a crash leaves either the whole object or none. Temporary files start with
".tmp-" and are ignored by list() (a crashed write's leftovers are removed on open).
All file work runs in worker threads.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import trio

from appliance.storage.objects.port import Body, ObjectInfo, ObjectNotFoundError, ObjectStoreError, Value
from appliance.storage.segments import fsync_dir, pwrite_all, pwritev_all

_TMP = ".tmp-"
_WRITEBACK_PIECE = 4 << 20


def _pieces(parts: list, size: int):
    """`parts` in consecutive runs of about `size` bytes (never splitting a part)."""
    run: list = []
    total = 0
    for p in parts:
        run.append(p)
        total += len(p)
        if total >= size:
            yield run
            run, total = [], 0
    if run:
        yield run


class LocalObjectStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"
        self._fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(_TMP):
                    os.unlink(os.path.join(dirpath, name))

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(_TMP) for p in parts):
            raise ObjectStoreError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def _write_tmp(self, path: Path, data: Value) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{_TMP}{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if isinstance(data, Body):
                pos = 0
                for piece in _pieces(data.parts, _WRITEBACK_PIECE):
                    n = pwritev_all(fd, piece, pos)  # straight from the batches' buffers
                    if self._fsync:
                        # start writing this piece to disk now: a 32 MiB burst at the fsync would
                        # queue the WAL's own small fsyncs (acks) behind it on a shared disk
                        os.posix_fadvise(fd, pos, n, os.POSIX_FADV_DONTNEED)
                    pos += n
            else:
                pwrite_all(fd, data, 0)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    async def put(self, key: str, data: Value) -> None:
        path = self._path(key)

        def work() -> None:
            tmp = self._write_tmp(path, data)
            os.replace(tmp, path)
            if self._fsync:
                fsync_dir(path.parent)

        await self._run(work, "put", key)

    async def put_if_absent(self, key: str, data: Value) -> bool:
        path = self._path(key)

        def work() -> bool:
            if path.exists():
                return False
            tmp = self._write_tmp(path, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            if self._fsync:
                fsync_dir(path.parent)
            return True

        return await self._run(work, "put_if_absent", key)

    async def get(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        path = self._path(key)

        def work() -> bytes:
            try:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    return fh.read() if length is None else fh.read(length)
            except FileNotFoundError:
                raise ObjectNotFoundError(f"no object {key!r}") from None

        return await self._run(work, "get", key)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        root = self.root

        def work() -> list[ObjectInfo]:
            # Walk only the directory the prefix names (keys are paths).
            base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
            top = root.joinpath(*base.split("/")) if base else root
            out = []
            for dirpath, _dirs, files in os.walk(top):
                rel = os.path.relpath(dirpath, root)
                for name in files:
                    if name.startswith(_TMP):
                        continue
                    key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                    if key.startswith(prefix):
                        try:
                            out.append(ObjectInfo(key, os.stat(os.path.join(dirpath, name)).st_size))
                        except FileNotFoundError:
                            pass
            out.sort(key=lambda o: o.key)
            return out

        return await self._run(work, "list", prefix)

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def work() -> None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

        await self._run(work, "delete", key)

    async def _run(self, work, op: str, key: str):  # type: ignore[no-untyped-def]
        try:
            return await trio.to_thread.run_sync(work)
        except ObjectStoreError:
            raise
        except OSError as e:
            raise ObjectStoreError(f"local object store {op} {key!r} failed: {e}") from e

    async def aclose(self) -> None:
        pass


__all__ = ["LocalObjectStore"]
