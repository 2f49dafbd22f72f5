"""MQTT QoS 1 across kill -9: a message the broker acknowledged (PUBACK) for an offline persistent
session must reach that session after a restart, at least once; and under continuous paho load
(3.1.1 and 5.0) with kills at random moments, every PUBACKed message must be readable from the
Kafka topic it is mapped to, at least once, with each publisher's first occurrences in publish
order (duplicates counted: QoS 1 redelivers what was stored but not acknowledged).

Before the fix (PUBACK waiting for the queue write, see appliance/mqtt/state.py) 200 of 200 were
lost when the kill followed the last PUBACK at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.e2e.test_confluent_kafka import create_topic
from tests.faults.load import read_partitions
from tests.faults.scale import LONG, knob, percentile, report, seed

ROUNDS = 20 if LONG else 2


def _client(port: int, client_id: str, clean: bool, received: list | None = None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    if received is not None:
        c.on_message = lambda _c, _u, msg: received.append(msg.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=clean, properties=props)
    c.loop_start()
    assert connected.wait(10)
    return c


def _close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_qos1_acknowledged_for_an_offline_session_survives_kill_9(make_appliance):
    app = make_appliance().start()
    sub = _client(app.mqtt_port, "historian", clean=True)
    sub.subscribe("plant/#", qos=1)
    time.sleep(0.3)
    _close(sub)
    acked: list[bytes] = []
    received: list[bytes] = []
    for round_ in range(ROUNDS):
        pub = _client(app.mqtt_port, f"pub-{round_}", clean=True)
        infos = [(f"r{round_}-{i}".encode(), pub.publish("plant/line3", f"r{round_}-{i}".encode(), qos=1))
                 for i in range(100)]
        for payload, info in infos:
            info.wait_for_publish(10)
            if info.is_published():  # PUBACK received
                acked.append(payload)
        app.kill()  # right after the acknowledgements
        _close(pub)  # its link died with the process: no reconnect loop left running after the test
        app.start()
        sub = _client(app.mqtt_port, "historian", clean=False, received=received)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not set(acked) <= set(received):
            time.sleep(0.05)
        _close(sub)
    lost = set(acked) - set(received)
    report("MQTT QoS 1 to an offline persistent session, kill -9 after PUBACK", iterations=ROUNDS,
           acknowledged=len(acked), lost=len(lost), duplicates=len(received) - len(set(received)))
    assert len(acked) == 100 * ROUNDS
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged QoS 1 messages lost"


# --- MQTT -> Kafka under kill -9 ------------------------------------------------------------------

CRASH_TOPIC = "mqtt.crash"
CRASH_PARTITIONS = 3
CRASH_MAP = f"""
[[mqtt_map]]
filter = "crash/{{pub}}/data"
kafka_topic = "{CRASH_TOPIC}"
key = "{{pub}}"
"""
IN_FLIGHT = 20  # QoS 1 messages each publisher keeps unacknowledged at most


class QoS1Publisher:
    """A paho-mqtt client publishing numbered QoS 1 messages to its own topic, reconnecting after
    every kill, and recording which numbers the broker acknowledged with a success PUBACK."""

    def __init__(self, port: int, name: str, protocol: int) -> None:
        self.name = name
        self.topic = f"crash/{name}/data"
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol)
        self.c.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        self.c.max_inflight_messages_set(IN_FLIGHT)
        self.c.on_publish = self._on_publish
        self._refused_mids: set[int] = set()
        self.pending: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        self.acked: list[int] = []
        self.refused = 0
        self.next_seq = 0
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_publish(self, _c, _u, mid, reason_code, _props) -> None:
        # Called before the message counts as published, so the sweep below sees a refusal in time.
        if reason_code.is_failure:
            self._refused_mids.add(mid)

    def payload(self, seq: int) -> bytes:
        return f"{self.name}|{seq:09d}|".encode() + bytes([seq % 251]) * (seq % 200)

    def step(self, publish: bool = True) -> None:
        """Sweep acknowledgements, then publish while the window has room and we are connected."""
        still = []
        for seq, info in self.pending:
            if info.is_published():
                if info.mid in self._refused_mids:
                    self._refused_mids.discard(info.mid)
                    self.refused += 1
                else:
                    self.acked.append(seq)
            else:
                still.append((seq, info))
        self.pending = still
        while publish and self.c.is_connected() and len(self.pending) < IN_FLIGHT:
            seq = self.next_seq
            self.next_seq += 1
            info = self.c.publish(self.topic, self.payload(seq), qos=1)
            if info.rc == mqtt.MQTT_ERR_NO_CONN:  # the link just dropped: paho sends it after reconnecting
                info.rc = mqtt.MQTT_ERR_SUCCESS
            elif info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # not queued: never sent, so nothing was promised; try again next step
            self.pending.append((seq, info))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class MqttLoad:
    """Drives several publishers from one thread until stopped."""

    def __init__(self, publishers: list[QoS1Publisher]) -> None:
        self.publishers = publishers
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    for p in self.publishers:
                        p.step()
                time.sleep(0.002)
        except BaseException as e:  # surfaced by wait_for_acks, not lost in a thread
            self.error = e

    def acked_counts(self) -> list[int]:
        with self._lock:
            return [len(p.acked) for p in self.publishers]

    def wait_for_acks(self, more_than: list[int], timeout: float, every: bool) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.error is None, f"load thread failed: {self.error!r}"
            grown = [now > before for now, before in zip(self.acked_counts(), more_than, strict=True)]
            if all(grown) if every else any(grown):
                return True
            time.sleep(0.005)
        return False

    def start(self) -> MqttLoad:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> int:
        """Stop publishing; wait for outstanding PUBACKs. Returns messages still unacknowledged."""
        self._stop.set()
        self._thread.join(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.pending for p in self.publishers):
            for p in self.publishers:
                p.step(publish=False)
            time.sleep(0.02)
        return sum(len(p.pending) for p in self.publishers)


def check_first_occurrences(publishers: list[QoS1Publisher], log: dict[int, list]) -> dict[str, object]:
    """Every acknowledged message is in Kafka at least once, byte for byte; each publisher's
    first occurrences come in publish order; duplicates are counted."""
    by_pub: dict[str, QoS1Publisher] = {p.name: p for p in publishers}
    copies: Counter[tuple[str, int]] = Counter()
    first_order: dict[str, list[int]] = {p.name: [] for p in publishers}
    corrupted = []
    for partition, entries in log.items():
        for offset, key, value in entries:
            name, seq_text, _ = value.split(b"|", 2)
            name, seq = name.decode(), int(seq_text)
            if key != name.encode() or value != by_pub[name].payload(seq):
                corrupted.append(f"p{partition}@{offset}")
            if copies[(name, seq)] == 0:
                first_order[name].append(seq)
            copies[(name, seq)] += 1
    lost = [(p.name, s) for p in publishers for s in p.acked if copies[(p.name, s)] == 0]
    out_of_order = [n for n, seqs in first_order.items() if seqs != sorted(seqs)]
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    return {"lost": lost, "out_of_order": out_of_order, "duplicates": duplicates, "corrupted": corrupted}


def test_kill_9_loop_under_paho_qos1_load_into_kafka_loses_no_acknowledged_message(make_appliance, tmp_path):
    iterations = knob("FAULTS_MQTT_CRASH_ITERATIONS")
    rng = random.Random(seed())
    config = tmp_path / "crash.toml"
    config.write_text(CRASH_MAP)
    app = make_appliance(config=config).start()
    create_topic(app.bootstrap, CRASH_TOPIC, CRASH_PARTITIONS)
    publishers = [QoS1Publisher(app.mqtt_port, f"pub{i}", mqtt.MQTTv5 if i % 2 else mqtt.MQTTv311)
                  for i in range(4)]
    load = MqttLoad(publishers).start()
    assert load.wait_for_acks([50] * len(publishers), 30, every=True), "no steady QoS 1 load"
    to_ready, to_first_ack, to_all_acking = [], [], []
    for _ in range(iterations):
        time.sleep(rng.uniform(0.05, 0.6))  # wherever the load is: mid-fsync, mid-PUBACK, mid-batch
        killed_at = time.monotonic()
        app.kill()
        before = load.acked_counts()
        app.start()
        to_ready.append(time.monotonic() - killed_at)
        assert load.wait_for_acks(before, 60, every=False), "no PUBACK after restart"
        to_first_ack.append(time.monotonic() - killed_at)
        assert load.wait_for_acks(before, 60, every=True), "a publisher never got going again"
        to_all_acking.append(time.monotonic() - killed_at)
    unacked = load.stop()
    assert unacked == 0, f"{unacked} messages never acknowledged after the last restart"
    for p in publishers:
        p.close()
    log = read_partitions(app.bootstrap, CRASH_TOPIC, CRASH_PARTITIONS)
    verdict = check_first_occurrences(publishers, log)
    acknowledged = sum(len(p.acked) for p in publishers)
    report("MQTT QoS 1 -> Kafka, kill -9 at random moments under paho load (2 x 3.1.1, 2 x 5.0)",
           iterations=iterations, acknowledged=acknowledged, lost=len(verdict["lost"]),
           duplicates=verdict["duplicates"], refused_pubacks=sum(p.refused for p in publishers),
           recovery_ready_p50_s=round(percentile(to_ready, 50), 3),
           recovery_ready_p99_s=round(percentile(to_ready, 99), 3),
           recovery_p50_s=round(percentile(to_first_ack, 50), 3), recovery_p99_s=round(percentile(to_first_ack, 99), 3),
           all_publishers_p99_s=round(percentile(to_all_acking, 99), 3))
    assert not verdict["lost"], f"{len(verdict['lost'])} of {acknowledged} PUBACKed messages lost: {verdict['lost'][:5]}"
    assert not verdict["out_of_order"], f"first occurrences out of publish order for {verdict['out_of_order']}"
    assert not verdict["corrupted"], verdict["corrupted"][:5]
    assert "Traceback" not in app.log_text()
