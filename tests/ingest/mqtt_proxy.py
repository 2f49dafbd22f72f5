"""A cuttable TCP proxy that understands MQTT framing: fault injection between a client and a broker.

    proxy = MqttCutProxy(upstream_port).start()
    proxy.cut_on(to_server=True, packet_type=PUBREC)   # swallow the next PUBREC and cut the link
    proxy.refuse = True                                # new connections are closed at once
    proxy.seen                                         # (direction, type, flags) of every packet forwarded

Threads and blocking sockets on loopback; used only by tests.
"""

from __future__ import annotations

import socket
import threading

PUBLISH, PUBREC, PUBREL = 3, 5, 6


def _split(buf: bytearray) -> list[bytes]:
    """Complete MQTT packets at the head of `buf` (removed from it)."""
    out = []
    while len(buf) >= 2:
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return out
            b = buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if len(buf) < i + length:
            return out
        out.append(bytes(buf[:i + length]))
        del buf[:i + length]
    return out


class MqttCutProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refuse = False
        self.seen: list[tuple[str, int, int]] = []  # ("c2s" | "s2c", packet type, fixed-header flags)
        self.cuts = 0
        self._rule: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False

    def start(self) -> MqttCutProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def cut_on(self, *, to_server: bool, packet_type: int) -> None:
        """Swallow the next packet of this type in this direction, then close both sides."""
        with self._lock:
            self._rule = ("c2s" if to_server else "s2c", packet_type)

    def count(self, direction: str, packet_type: int, flags_mask: int = 0) -> int:
        with self._lock:
            return sum(1 for d, t, f in self.seen if d == direction and t == packet_type and f & flags_mask == flags_mask)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self._cut_all()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, "c2s"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "s2c"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                for packet in _split(buf):
                    ptype, flags = packet[0] >> 4, packet[0] & 0x0F
                    with self._lock:
                        cut = self._rule == (direction, ptype)
                        if cut:
                            self._rule = None
                            self.cuts += 1
                        else:
                            self.seen.append((direction, ptype, flags))
                    if cut:
                        self._cut_all()
                        return
                    dst.sendall(packet)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _cut_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
