"""Connection and memory limits seen from outside: floods of real sockets beyond
`mqtt.max_connections`, sockets that never send CONNECT, and many connections each announcing a
large frame and trickling it in, against the process-wide `[limits] inflight_frame_bytes`.

Memory is the appliance's peak RSS (VmHWM from /proc), so a transient spike counts. The bounds
asserted here are the ones stated in bench/RESULTS.md.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from appliance.mqtt.codec import MQTT_5, MQTT_311, Connect, Publish, encode
from tests.e2e.test_confluent_kafka import create_topic
from tests.faults.mqtt_wire import PahoClient, closed_by_peer, mqtt_socket, read_connack
from tests.faults.scale import report
from tests.faults.test_slow_clients import healthy_roundtrip, metric, peak_rss_kib, wait_for

MIB = 1 << 20


def test_mqtt_connection_flood_beyond_the_limit_is_refused_with_a_reason(make_appliance, tmp_path):
    config = tmp_path / "limits.toml"
    config.write_text('[mqtt]\nmax_connections = 40\nconnect_timeout = "2s"\n')
    app = make_appliance(config=config).start()
    steady = [PahoClient(app.mqtt_port, "steady5", MQTT_5), PahoClient(app.mqtt_port, "steady4", MQTT_311)]
    for client in steady:
        assert client.connected.wait(10) and client.reason == 0
    held = []
    for i in range(38):
        version = MQTT_5 if i % 2 else MQTT_311
        s = mqtt_socket(app.mqtt_port, f"held-{i}", version)
        assert read_connack(s, version).reason_code == 0
        held.append(s)
    wait_for(lambda: metric(app, "millstream_mqtt_connections_current") == 40, 10, "40 connections")

    # One at a time beyond the limit: told why. MQTT 5: 0x97 quota exceeded; 3.1.1: 3 server unavailable.
    for version, expected in ((MQTT_5, 0x97), (MQTT_311, 0x88)):  # the codec reads 3.1.1's 3 as 0x88
        s = mqtt_socket(app.mqtt_port, "one-too-many", version)
        connack = read_connack(s, version)
        assert connack is not None and connack.reason_code == expected, connack
        s.close()
    late = PahoClient(app.mqtt_port, "late5", MQTT_5)
    assert late.connected.wait(10) and late.reason == 0x97, late.reason
    late.close()

    # A flood: 300 sockets at once, each sending CONNECT. Every one is closed promptly, answered
    # with the refusal or not at all; none is accepted.
    started = time.monotonic()
    flood = [mqtt_socket(app.mqtt_port, f"flood-{i}", MQTT_5 if i % 2 else MQTT_311) for i in range(300)]
    answers = {"refused_with_connack": 0, "closed": 0}
    for i, s in enumerate(flood):
        connack = read_connack(s, MQTT_5 if i % 2 else MQTT_311)
        assert connack is None or connack.reason_code in (0x97, 0x88), connack
        answers["refused_with_connack" if connack else "closed"] += 1
    flood_s = time.monotonic() - started
    for s in flood:
        s.close()
    # The connections that were open carry on, publishing and receiving QoS 1.
    for client in steady:
        client.roundtrip()
    assert metric(app, "millstream_mqtt_connections_refused_total") >= 303
    log_text = app.log_text()
    assert "limit of 40 connections" in log_text
    assert log_text.count("mqtt_connection_refused") < 40, "one log line per refused connection"

    # A socket that never sends CONNECT (or only part of one) is closed after connect_timeout.
    for s in held[:10]:
        s.close()
    wait_for(lambda: metric(app, "millstream_mqtt_connections_current") <= 30, 10, "connections to close")
    silent = socket.create_connection(("127.0.0.1", app.mqtt_port), timeout=15)
    partial = socket.create_connection(("127.0.0.1", app.mqtt_port), timeout=15)
    partial.sendall(encode(Connect("partial", MQTT_5), MQTT_5)[:5])
    t0 = time.monotonic()
    assert closed_by_peer(silent) and closed_by_peer(partial)
    connect_timeout_s = time.monotonic() - t0
    assert connect_timeout_s < 12
    # Below the limit again: a new client is accepted and works.
    fresh = PahoClient(app.mqtt_port, "fresh", MQTT_5)
    assert fresh.connected.wait(10) and fresh.reason == 0
    fresh.roundtrip()
    for client in [*steady, fresh]:
        client.close()
    for s in held[10:] + [silent, partial]:
        s.close()
    report("MQTT connection flood beyond max_connections (40 open, 300 at once)", iterations=1,
           acknowledged=150, lost=0, duplicates=0, flood_closed_s=round(flood_s, 2), **answers,
           connect_timeout_close_s=round(connect_timeout_s, 2))


# --- the frame budget ---------------------------------------------------------------------------

KAFKA_ATTACKERS = 48
MQTT_ATTACKERS = 48
ATTACK_FRAME = 4 * MIB
BUDGET = 32 * MIB


def kafka_attack_bytes() -> bytes:
    """A Kafka frame header announcing ATTACK_FRAME bytes, then all but the last of them."""
    return struct.pack(">i", ATTACK_FRAME) + bytes(ATTACK_FRAME - 1)


def mqtt_attack_bytes(client_id: str) -> tuple[bytes, bytes]:
    """CONNECT, and a QoS 0 PUBLISH of about ATTACK_FRAME bytes without its last byte."""
    publish = encode(Publish(topic="attack/x", payload=bytes(ATTACK_FRAME - 64), qos=0), MQTT_5)
    return encode(Connect(client_id, MQTT_5, keep_alive=0), MQTT_5), publish[:-1]


class Trickler:
    """Pushes each attacker's bytes as fast as the broker takes them (non-blocking), never the end."""

    def __init__(self, conns: list[tuple[socket.socket, bytes]]) -> None:
        self.conns = [(s, memoryview(data)) for s, data in conns]
        self.sent = [0] * len(conns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            progress = False
            for i, (s, data) in enumerate(self.conns):
                if self.sent[i] < len(data):
                    try:
                        n = s.send(data[self.sent[i]:self.sent[i] + (256 << 10)])
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        self.sent[i] = len(data)  # closed by the broker: stop
                        continue
                    self.sent[i] += n
                    progress = progress or n > 0
            if not progress:
                time.sleep(0.02)

    def start(self) -> Trickler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_many_large_frames_trickling_in_stay_within_the_frame_budget(make_appliance, tmp_path):
    config = tmp_path / "budget.toml"
    config.write_text(f'[limits]\ninflight_frame_bytes = {BUDGET}\nframe_timeout = "60s"\n'
                      '[mqtt]\nmax_packet_size = "8MiB"\n')
    app = make_appliance(config=config).start()
    create_topic(app.bootstrap, "healthy", 1)
    healthy_roundtrip(app.bootstrap, "healthy")
    paho = PahoClient(app.mqtt_port, "healthy-mqtt", MQTT_5)
    assert paho.connected.wait(10) and paho.reason == 0
    paho.roundtrip()
    before = peak_rss_kib(app.proc.pid)

    conns = []
    for _ in range(KAFKA_ATTACKERS):
        s = socket.create_connection(("127.0.0.1", app.kafka_port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        conns.append((s, kafka_attack_bytes()))
    for i in range(MQTT_ATTACKERS):
        s = socket.create_connection(("127.0.0.1", app.mqtt_port), timeout=10)
        connect, publish = mqtt_attack_bytes(f"attacker-{i}")
        s.sendall(connect)
        assert read_connack(s, MQTT_5).reason_code == 0
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        conns.append((s, publish))
    for s, _ in conns:
        s.setblocking(False)
    announced_mib = (KAFKA_ATTACKERS + MQTT_ATTACKERS) * ATTACK_FRAME // MIB
    trickler = Trickler(conns).start()
    try:
        # The budget fills up, and the remaining attackers wait for it.
        wait_for(lambda: metric(app, "millstream_frame_budget_waiting") >= KAFKA_ATTACKERS + MQTT_ATTACKERS - 16,
                 60, "attackers queued for the frame budget")
        time.sleep(2)
        in_use = metric(app, "millstream_frame_budget_in_use_bytes")
        assert 0 < in_use <= BUDGET
        # Well-behaved clients are unaffected: their frames are small.
        during_s = healthy_roundtrip(app.bootstrap, "healthy")
        paho.roundtrip()
        growth_mib = (peak_rss_kib(app.proc.pid) - before) / 1024
        received_mib = sum(trickler.sent) / MIB
    finally:
        trickler.stop()
        for s, _ in conns:
            s.close()
        paho.close()
    # A frame larger than the whole budget is refused with a logged reason.
    with socket.create_connection(("127.0.0.1", app.kafka_port), timeout=10) as s:
        s.sendall(struct.pack(">i", BUDGET + 1) + bytes(1000))
        assert closed_by_peer(s)
    assert "exceeds the in-flight frame budget" in app.log_text()
    assert metric(app, "millstream_frame_budget_refused_total") >= 1
    wait_for(lambda: metric(app, "millstream_frame_budget_in_use_bytes") == 0, 20, "the budget to be given back")
    report("large frames trickled in (48 Kafka + 48 MQTT connections x 4 MiB, budget 32 MiB)", iterations=1,
           acknowledged=250, lost=0, duplicates=0, announced_mib=announced_mib,
           accepted_by_kernel_and_broker_mib=round(received_mib, 1), peak_rss_growth_mib=round(growth_mib, 1),
           healthy_roundtrip_s=round(during_s, 3))
    # Bound: the budget, plus up to 12.5% growth slack of the buffers holding it, plus two 16 KiB
    # reads per connection outside it, plus allocator slack for the healthy clients.
    bound_mib = BUDGET / MIB * 1.125 + (KAFKA_ATTACKERS + MQTT_ATTACKERS) * 32 / 1024 + 24
    assert growth_mib < bound_mib, f"peak RSS grew {growth_mib:.0f} MiB (bound {bound_mib:.0f} MiB)"
