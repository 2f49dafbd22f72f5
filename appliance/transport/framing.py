"""Length-prefixed frames (Kafka: int32 big-endian size, then the frame) over a trio stream.

With a `FrameBudget` (transport/frame_budget.py) the body of a large frame is read only once its
size has been reserved from the process-wide budget; call `done()` when the frame has been
handed off, and `close()` when the connection ends, so the reservation goes back. Reads are at
most `chunk` bytes (16 KiB) except while reading a big frame, which reads up to its end and no
further: a connection holds at most about two chunks outside the budget. A big frame's chunks are
joined once at the end (one copy of the body, not a growing buffer and a slice of it).
"""

from __future__ import annotations

import math
import struct

import trio

from appliance.errors import ProtocolError
from appliance.transport.direct_io import receive_some, socket_fd
from appliance.transport.frame_budget import SMALL_FRAME, FrameBudget, reserve

_SIZE = struct.Struct(">i")
_MAX_READ = 1 << 20  # largest single receive while filling a big frame


class FrameTooLargeError(ProtocolError):
    pass


class FrameReader:
    """Reads whole frames from a stream with one buffer and few copies."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame: int, chunk: int = SMALL_FRAME, *,
                 budget: FrameBudget | None = None, frame_timeout: float = math.inf) -> None:
        self._stream = stream
        self._max = max_frame
        self._chunk = chunk
        self._buf = bytearray()
        self._budget = budget
        self._frame_timeout = frame_timeout
        self.held = 0  # bytes of the budget this reader holds for the current frame
        self._fd = socket_fd(stream)  # read directly (transport/direct_io.py); set before any read

    async def _receive(self, size: int) -> bytes:
        return await receive_some(self._stream, self._fd, size)

    async def _fill(self, need: int, exact: bool = False) -> bool:
        """Buffer at least `need` bytes; `exact`: never read past them (a reserved frame's end)."""
        while len(self._buf) < need:
            missing = min(need - len(self._buf), _MAX_READ)
            data = await self._receive(missing if exact else max(self._chunk, missing))
            if not data:
                if self._buf:
                    raise ProtocolError(f"connection closed mid-frame ({len(self._buf)} of {need} bytes)")
                return False
            self._buf += data
        return True

    async def read_frame(self) -> bytes | None:
        """The next frame without its size prefix, or None at a clean end of stream."""
        self.done()
        if not await self._fill(4):
            return None
        (size,) = _SIZE.unpack_from(self._buf, 0)
        if size < 0:
            raise ProtocolError(f"negative frame length {size}")
        if size > self._max:
            raise FrameTooLargeError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
        total = 4 + size
        if total <= SMALL_FRAME or len(self._buf) >= total:
            if not await self._fill(total):
                raise ProtocolError("connection closed mid-frame")
            with memoryview(self._buf) as view:
                frame = bytes(view[4:total])
            if total > SMALL_FRAME:
                self._buf = self._buf[total:]  # let go of the big buffer, keep what follows
            else:
                del self._buf[:total]
            return frame
        budget = self._budget
        if budget is not None:
            if not budget.fits(total):
                raise FrameTooLargeError(f"frame of {size} bytes exceeds the in-flight frame budget of "
                                         f"{budget.capacity} bytes ([limits] inflight_frame_bytes)")
            await reserve(budget, total)  # back-pressure: this socket is not read until it fits
            self.held = total
        with trio.move_on_after(self._frame_timeout if budget is not None else math.inf) as scope:
            frame = await self._read_big(size)
        if scope.cancelled_caught:
            raise ProtocolError(f"frame of {size} bytes not completed within {self._frame_timeout:g}s "
                                f"while holding the frame budget")
        return frame

    async def _read_big(self, size: int) -> bytes:
        """The rest of a big frame, read up to its end and no further, as chunks joined once:
        one copy of the body instead of growing a buffer and slicing the frame out of it."""
        with memoryview(self._buf) as view:
            parts = [bytes(view[4:])]
        have = len(parts[0])
        self._buf = bytearray()
        while have < size:
            data = await self._receive(min(size - have, _MAX_READ))
            if not data:
                raise ProtocolError(f"connection closed mid-frame ({have + 4} of {size + 4} bytes)")
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def done(self) -> None:
        """The last frame has been handed off: give its reservation back."""
        if self.held:
            assert self._budget is not None
            self._budget.release(self.held)
            self.held = 0

    close = done  # the connection ended: same thing
