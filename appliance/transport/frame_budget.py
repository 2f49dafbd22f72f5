"""One process-wide byte budget for request frames being received, shared by every listener.

Each connection may buffer a frame up to its protocol's maximum (`kafka.max_request_size`,
`mqtt.max_packet_size`); thousands of connections each sending a large frame slowly would
together hold gigabytes. So before a connection buffers the body of a frame larger than
`SMALL_FRAME` (its length is known from the header) it reserves that many bytes here, and
releases them once the frame has been handed to the protocol code. When the budget is spent the
reader waits for its turn, first come first served, and does not read that socket meanwhile:
TCP pushes the sender back and the bytes stay in kernel buffers, not in our heap. A frame larger
than the whole budget can never fit and is refused (the caller closes the connection and logs it).

    budget = FrameBudget(256 << 20)           # [limits] inflight_frame_bytes
    if not budget.fits(size): ...             # refuse: larger than the whole budget
    await reserve(budget, size)               # returns at once while there is room
    ...                                       # buffer and handle the frame
    budget.release(size)

`FrameBudget` is plain accounting (no I/O, no clock); `reserve` is its trio adapter. Frames up
to `SMALL_FRAME` skip the budget: their cost is bounded by the connection limits instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

SMALL_FRAME = 16 << 10  # frames up to this size (header included) never wait for the budget


@dataclass(eq=False)
class _Waiter:
    size: int
    wake: Callable[[], None]
    granted: bool = False


@dataclass(eq=False)
class FrameBudget:
    """Bytes of request frames being received, across all connections of all listeners."""

    capacity: int
    in_use: int = 0
    peak: int = 0  # highest `in_use` seen
    waits: int = 0  # reservations that had to wait for room
    refused: int = 0  # frames larger than the whole budget
    _queue: deque[_Waiter] = field(default_factory=deque, repr=False)

    def fits(self, size: int) -> bool:
        """Whether a frame of `size` bytes can ever be reserved; counts a refusal when not."""
        if size <= self.capacity:
            return True
        self.refused += 1
        return False

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def try_reserve(self, size: int) -> bool:
        """Take `size` bytes now if they are free and nobody queued earlier (no overtaking)."""
        if self._queue or self.in_use + size > self.capacity:
            return False
        self._take(size)
        return True

    def enqueue(self, size: int, wake: Callable[[], None]) -> _Waiter:
        """Queue for `size` bytes; `wake()` is called once they have been taken for the waiter."""
        self.waits += 1
        waiter = _Waiter(size, wake)
        self._queue.append(waiter)
        return waiter

    def cancel(self, waiter: _Waiter) -> None:
        """The waiter gave up: drop it from the queue, or give back what it was granted."""
        if waiter.granted:
            self.release(waiter.size)
            return
        try:
            self._queue.remove(waiter)
        except ValueError:
            return
        self._grant()  # a large frame at the head may have been holding back smaller ones

    def release(self, size: int) -> None:
        self.in_use -= size
        assert self.in_use >= 0, "frame budget released more than was reserved"
        self._grant()

    def _take(self, size: int) -> None:
        self.in_use += size
        self.peak = max(self.peak, self.in_use)

    def _grant(self) -> None:
        while self._queue and self.in_use + self._queue[0].size <= self.capacity:
            waiter = self._queue.popleft()
            self._take(waiter.size)
            waiter.granted = True
            waiter.wake()


async def reserve(budget: FrameBudget, size: int) -> None:
    """Wait until `size` bytes of the budget are ours (the caller has checked `fits`).
    Cancelled while waiting, it takes nothing."""
    if budget.try_reserve(size):
        return
    granted = trio.Event()
    waiter = budget.enqueue(size, granted.set)
    try:
        await granted.wait()
    except BaseException:
        budget.cancel(waiter)
        raise
