"""A streaming packet reader: feed bytes as they arrive, take complete packets out.

The maximum packet size is checked as soon as the fixed header is complete, so an oversize
packet is refused (PacketTooLarge, reason 0x95) without buffering its body.
"""

from __future__ import annotations

from collections.abc import Iterator

from appliance.mqtt.codec.errors import MalformedPacket, PacketTooLarge, ProtocolViolation
from appliance.mqtt.codec.packets import Connect, Packet, decode
from appliance.mqtt.codec.properties import PacketType

MAX_PACKET_SIZE = 268_435_460  # 1 + 4 + 268435455, the largest the fixed header can express


class PacketReader:
    """Bytes in, packets out.

    `version` is None until a CONNECT has been read (server side: the first packet must be
    CONNECT), then the level it negotiated. A client sets it up front.
    """

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE, version: int | None = None) -> None:
        self.max_packet_size = max_packet_size
        self.version = version
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending_size(self) -> int | None:
        """Total size of the packet at the head of the buffer once its fixed header has arrived
        (it may still be incomplete), else None. Lets the adapter budget a large packet early."""
        buf = self._buf
        start = self._pos
        avail = len(buf) - start
        length = 0
        for i in range(1, min(avail, 5)):
            b = buf[start + i]
            length |= (b & 0x7F) << (7 * (i - 1))
            if not b & 0x80:
                return i + 1 + length
        return None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def __iter__(self) -> Iterator[Packet]:
        while (packet := self.next_packet()) is not None:
            yield packet

    def next_packet(self) -> Packet | None:
        buf = self._buf
        start = self._pos
        avail = len(buf) - start
        if avail < 2:
            return None
        length = 0
        shift = 0
        i = 1
        while True:
            if i >= avail:
                if i > 4:
                    raise MalformedPacket("remaining length longer than 4 bytes")
                return None
            b = buf[start + i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if i > 4:
                raise MalformedPacket("remaining length longer than 4 bytes")
        total = i + length
        if total > self.max_packet_size:
            raise PacketTooLarge(f"packet of {total} bytes exceeds the maximum of {self.max_packet_size}")
        if avail < total:
            return None
        first = buf[start]
        body = bytes(buf[start + i:start + total])
        self._pos = start + total
        if self._pos > 65536 and self._pos * 2 > len(buf):
            del buf[:self._pos]
            self._pos = 0
        if self.version is None:
            if first >> 4 != PacketType.CONNECT:
                raise ProtocolViolation("the first packet must be CONNECT")
            packet = decode(first, body, 5)
            assert isinstance(packet, Connect)
            self.version = packet.protocol_version
            return packet
        return decode(first, body, self.version)
