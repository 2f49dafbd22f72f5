"""A TCP link the tests can cut and restore: the fault injector between an appliance and its object
store, or between a plant and its cloud.

    link = TcpProxy(target_port=moto.port).start()    # clients connect to link.port
    link.cut("reset")       # live connections get a RST, new ones are reset at once (peer down)
    link.cut("blackhole")   # nothing flows either way, connections hang (a WAN cut: timeouts)
    link.restore()          # traffic flows again (frozen connections are reset unless keep=True)

Threads (not trio) so the synchronous tests that drive real clients and subprocesses can use it.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

_LINGER_RST = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN


def _reset(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    server: socket.socket | None = None
    closed: bool = False

    def reset(self) -> None:
        self.closed = True
        _reset(self.client)
        if self.server is not None:
            _reset(self.server)


@dataclass(eq=False)
class TcpProxy:
    target_port: int
    target_host: str = "127.0.0.1"
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    connections: int = 0  # accepted while the link was up
    refused: int = 0  # accepted and reset or held while cut
    bytes_forwarded: int = 0
    _pairs: set[_Pair] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._mode = "up"
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._held: list[socket.socket] = []

    @property
    def port(self) -> int:
        return self.listen_port

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def is_cut(self) -> bool:
        return self._mode != "up"

    def start(self) -> TcpProxy:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.listen_host, self.listen_port))
        ls.listen(128)
        ls.settimeout(0.2)
        self.listen_port = ls.getsockname()[1]
        self._listener = ls
        threading.Thread(target=self._accept_loop, name=f"proxy-{self.listen_port}", daemon=True).start()
        return self

    def cut(self, mode: str = "reset") -> None:
        assert mode in ("reset", "blackhole"), mode
        with self._lock:
            self._mode = mode
            self._flowing.clear()
            if mode == "reset":
                for pair in list(self._pairs):
                    pair.reset()
                self._pairs.clear()

    def restore(self, *, keep: bool = False) -> None:
        """Let traffic flow again. Connections frozen by a blackhole are reset (as a long cut's
        timeouts would end them) unless `keep` (a short blip TCP rides out)."""
        with self._lock:
            if not keep:
                for pair in list(self._pairs):
                    pair.reset()
                self._pairs.clear()
            for s in self._held:
                _reset(s)
            self._held.clear()
            self._mode = "up"
            self._flowing.set()

    def close(self) -> None:
        self._stop.set()
        self.restore()
        if self._listener is not None:
            self._listener.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if self._mode == "reset":
                    self.refused += 1
                    _reset(conn)
                    continue
                if self._mode == "blackhole":
                    self.refused += 1
                    self._held.append(conn)  # the handshake completed; nothing will ever come back
                    continue
                pair = _Pair(conn)
                self._pairs.add(pair)
                self.connections += 1
            threading.Thread(target=self._open, args=(pair,), daemon=True).start()

    def _open(self, pair: _Pair) -> None:
        try:
            server = socket.create_connection((self.target_host, self.target_port), timeout=5)
        except OSError:
            pair.reset()
            return
        if server.getsockname() == server.getpeername():
            # While the target is down, a connect whose ephemeral port happens to be the target's
            # own port connects to itself (TCP simultaneous open) and would keep the target from
            # binding that port again when it restarts.
            _reset(server)
            pair.reset()
            return
        pair.server = server
        if pair.closed:  # cut while connecting
            _reset(pair.server)
            return
        try:
            for src, dst in ((pair.client, pair.server), (pair.server, pair.client)):
                src.settimeout(0.2)
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()
        except OSError:  # reset by a cut in the meantime
            pair.reset()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        while not pair.closed:
            if not self._flowing.is_set():
                self._flowing.wait(0.2)
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            # Data read just before a cut is held back until the link returns (or the pair is reset).
            while not self._flowing.is_set() and not pair.closed:
                self._flowing.wait(0.2)
            if pair.closed:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
            self.bytes_forwarded += len(data)
        with self._lock:
            self._pairs.discard(pair)
        pair.reset()


__all__ = ["TcpProxy"]
