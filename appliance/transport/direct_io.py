"""Plain TCP sockets read and written directly (trio adapters for the Kafka and MQTT listeners).

A stream's `receive_some` tries a read that finds nothing before every wait, and `send_all`
takes a scheduling round even when the socket buffer has room: on this path, where the cost is
per wake-up, the listeners wait until the socket is readable and read once, and write at once
what the socket takes. TLS streams (no plain fd) keep the stream calls. Errors surface as the
stream's would: `trio.BrokenResourceError`.
"""

from __future__ import annotations

import os

import trio


def socket_fd(stream: trio.abc.Stream) -> int | None:
    """The fd to read and write directly, or None (TLS and other wrapped streams)."""
    return stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None


async def receive_some(stream: trio.abc.ReceiveStream, fd: int | None, size: int) -> bytes:
    """Up to `size` bytes (b"" at end of stream), like `stream.receive_some`."""
    if fd is None:
        return await stream.receive_some(size)
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            return os.read(fd, size)
        except BlockingIOError:
            continue  # woken without data after all
        except OSError as e:
            raise trio.BrokenResourceError(f"socket read failed: {e}") from e


async def send_all(stream: trio.abc.SendStream, fd: int | None, data: bytes | bytearray) -> None:
    """`stream.send_all`, writing directly first what the socket buffer takes."""
    sent = 0
    if fd is not None:
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            pass
        except OSError as e:
            raise trio.BrokenResourceError(f"socket write failed: {e}") from e
    if sent < len(data):
        await stream.send_all(memoryview(data)[sent:] if sent else data)
