"""Length-prefixed frames (Kafka: int32 big-endian size, then the frame) over a trio stream."""

from __future__ import annotations

import struct

import trio

from appliance.errors import ProtocolError

_SIZE = struct.Struct(">i")


class FrameTooLargeError(ProtocolError):
    pass


class FrameReader:
    """Reads whole frames from a stream with one buffer and few copies."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame: int, chunk: int = 256 << 10) -> None:
        self._stream = stream
        self._max = max_frame
        self._chunk = chunk
        self._buf = bytearray()

    async def _fill(self, need: int) -> bool:
        while len(self._buf) < need:
            data = await self._stream.receive_some(max(self._chunk, need - len(self._buf)))
            if not data:
                if self._buf:
                    raise ProtocolError(f"connection closed mid-frame ({len(self._buf)} of {need} bytes)")
                return False
            self._buf += data
        return True

    async def read_frame(self) -> bytes | None:
        """The next frame without its size prefix, or None at a clean end of stream."""
        if not await self._fill(4):
            return None
        (size,) = _SIZE.unpack_from(self._buf, 0)
        if size < 0:
            raise ProtocolError(f"negative frame length {size}")
        if size > self._max:
            raise FrameTooLargeError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
        if not await self._fill(4 + size):
            raise ProtocolError("connection closed mid-frame")
        buf = self._buf
        end = 4 + size
        with memoryview(buf) as view, view[4:end] as part:
            frame = part.tobytes()  # one copy (a bytearray slice, then bytes(), would be two)
        if len(buf) == end:  # the common case: nothing of the next request read yet
            buf.clear()
        else:
            del buf[:end]
        return frame
