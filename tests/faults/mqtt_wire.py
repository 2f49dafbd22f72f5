"""Raw MQTT sockets (CONNECT, then silence) and a paho-mqtt client that checks a QoS 1 round trip."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt

from appliance.mqtt.codec import MQTT_5, ConnAck, Connect, PacketReader, encode


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def mqtt_socket(port: int, client_id: str, version: int, timeout: float = 10) -> socket.socket:
    """A raw socket that has sent CONNECT (keep alive 0: it may stay silent for ever)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(encode(Connect(client_id, version, keep_alive=0), version))
    return s


def read_connack(s: socket.socket, version: int) -> ConnAck | None:
    """The CONNACK the broker sent, or None if it closed (or reset) without one."""
    reader = PacketReader(version=version)
    try:
        while data := s.recv(4096):
            reader.feed(data)
            packet = reader.next_packet()
            if packet is not None:
                assert isinstance(packet, ConnAck), packet
                return packet
    except ConnectionResetError:
        pass
    return None


def closed_by_peer(s: socket.socket) -> bool:
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


class PahoClient:
    """A paho-mqtt client that publishes QoS 1 to its own topic and counts what comes back."""

    def __init__(self, port: int, client_id: str, version: int) -> None:
        protocol = mqtt.MQTTv5 if version == MQTT_5 else mqtt.MQTTv311
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.topic = f"limits/{client_id}"
        self.connected = threading.Event()
        self.reason: int | None = None
        self.received: list[bytes] = []
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, msg: self.received.append(msg.payload)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, _c, _u, _flags, reason_code, _props) -> None:
        self.reason = reason_code.value
        self.connected.set()

    def roundtrip(self, n: int = 50) -> None:
        """Subscribe, publish n QoS 1 messages, wait for every PUBACK and every message back."""
        self.received.clear()
        _, mid = self.c.subscribe(self.topic, qos=1)
        time.sleep(0.2)
        infos = [self.c.publish(self.topic, f"m{i}".encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(20)
            assert info.is_published()
        wait_for(lambda: len(set(self.received)) >= n, 20, f"{n} messages back on {self.topic}")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
