"""The WAL's own writer thread: runs its write+fsync jobs one after another, in order.

Why not `trio.to_thread.run_sync` per group commit: at a few thousand small messages a second
each fsync cycle carries about one message, and the cost is per wake-up, not per byte. A job
handed to this long-lived thread costs one queue put; its completion comes back to trio as ONE
`run_sync_soon` callback that publishes the result directly, with no flusher task to reschedule,
no capacity limiter and no per-call thread hand-off.

Contract: `submit(work, done)` runs `work()` on the thread and then calls `done(result, error)`
on the trio thread (exactly one of them is None). After a failed job the thread pauses
`retry_delay` seconds before the next one, so a broken disk is not hammered. `stop()` lets the
queued jobs finish and ends the thread; `join()` waits for it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import trio

Done = Callable[[Any, BaseException | None], None]


class WalWriter:
    def __init__(self, name: str, retry_delay: float) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Done] | None] = queue.SimpleQueue()
        self._retry_delay = retry_delay
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        self._jobs.put((work, done))

    def stop(self) -> None:
        self._jobs.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, done = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = work()
            except BaseException as e:  # handed to trio, which fails the appends
                error = e
            try:
                self._token.run_sync_soon(done, result, error)
            except trio.RunFinishedError:  # the trio run is over (a crashed/abandoned store)
                return
            if error is not None:
                time.sleep(self._retry_delay)


__all__ = ["WalWriter"]
