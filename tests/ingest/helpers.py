"""Real clients for ingestion tests: paho-mqtt (sync, its own network thread) and confluent-kafka."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def write_config(directory: Path, text: str) -> Path:
    path = directory / "site.toml"
    path.write_text(text)
    return path


class Client:
    """A paho client that records PUBACK reason codes and received messages."""

    def __init__(self, port: int, client_id: str, *, v5: bool = True, will: tuple | None = None,
                 clean: bool = True) -> None:
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kw = {} if v5 else {"clean_session": clean}
        self.v5 = v5
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kw)
        if will:
            self.c.will_set(*will)
        self.acks: dict[int, int] = {}  # mid -> reason code value
        self.acked = threading.Condition()
        self.messages: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()
        connected = threading.Event()
        self.c.on_connect = lambda *a: connected.set()
        self.c.on_publish = self._on_publish
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()
        if not connected.wait(5):
            raise TimeoutError("no CONNACK")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.acked:
            self.acks[mid] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
            self.acked.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, user: list[tuple[str, str]] | None = None,
                content_type: str | None = None, wait: bool = True) -> int:
        """The PUBACK reason code when `wait` (QoS 1), else the message id."""
        props = None
        if self.v5 and (user or content_type):
            props = Properties(PacketTypes.PUBLISH)
            if user:
                props.UserProperty = user
            if content_type:
                props.ContentType = content_type
        info = self.c.publish(topic, payload, qos, properties=props)
        if wait and qos:
            return self.wait_ack(info.mid)
        return info.mid

    def wait_ack(self, mid: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        with self.acked:
            while mid not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no PUBACK for mid {mid}")
                self.acked.wait(left)
            return self.acks[mid]

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic_filter, qos)
        if not done.wait(5):
            raise TimeoutError("no SUBACK")

    def receive(self, timeout: float = 5.0):
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0, settle: float = 0.5) -> list:
    """Every record of a topic from the start, once `expected` arrived and nothing more for `settle` s."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "topic.metadata.refresh.interval.ms": 500})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                if len(out) >= expected and time.monotonic() - idle_since > settle:
                    break
                continue
            if msg.error() is not None:
                if msg.error().code() == -191:  # partition EOF
                    continue
                if "UNKNOWN_TOPIC" in str(msg.error()):
                    continue
                raise AssertionError(str(msg.error()))
            idle_since = time.monotonic()
            out.append(msg)
    finally:
        c.close()
    return out


def wait_for_log(app, text: str, count: int = 1, timeout: float = 10.0) -> None:
    """Wait until `text` appears `count` times in an ApplianceProcess's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.log_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} x{count} not in the log:\n{app.log_text()[-3000:]}")


class Mosquitto:
    """A real Mosquitto broker on a loopback port (the config lives in the test's tmp dir)."""

    def __init__(self, tmp_path, port: int) -> None:
        self.port = port
        self.conf = tmp_path / "mosquitto.conf"
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = open(tmp_path / "mosquitto.log", "ab")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                Client(self.port, "probe").close()
                return self
            except (OSError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
