"""Slow, stuck and idle clients: memory stays bounded and well-behaved clients are unaffected.

Memory is the broker process's peak RSS (VmHWM), read from /proc, so a transient spike counts.
The bounds asserted here are the ones stated in bench/RESULTS.md.
"""

from __future__ import annotations

import resource
import socket
import struct
import time
import urllib.request

from confluent_kafka import Producer

from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m
from appliance.mqtt.codec import MQTT_5, MQTT_311
from tests.e2e.test_confluent_kafka import create_topic
from tests.faults import kafka_wire as wire
from tests.faults.load import read_partitions
from tests.faults.mqtt_wire import PahoClient, mqtt_socket, read_connack
from tests.faults.scale import report

MIB = 1 << 20
FETCH_CAP = 55 * MIB  # the broker's cap on one Fetch response, as Kafka's fetch.max.bytes default


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def fill(bootstrap: str, topic: str, megabytes: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20, "batch.size": 1 << 20})
    chunk = b"v" * 4000
    for i in range(megabytes * 256):
        while True:
            try:
                p.produce(topic, value=chunk + str(i).encode(), partition=0)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0


def healthy_roundtrip(bootstrap: str, topic: str, n: int = 200) -> float:
    """Seconds for a fresh client to produce n records (acks=all) and read its partition back."""
    started = time.monotonic()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2})
    errors = []
    for i in range(n):
        p.produce(topic, value=f"healthy-{i}".encode(), partition=0,
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(20) == 0 and not errors, errors[:3]
    values = [v for _, _, v in read_partitions(bootstrap, topic, 1, timeout=30)[0]]
    assert values[-n:] == [f"healthy-{i}".encode() for i in range(n)]
    return time.monotonic() - started


def fetch_frame(topic: str, times: int, max_bytes: int, correlation_id: int) -> bytes:
    F = m.FetchRequest
    part = F.FetchTopic.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=max_bytes)
    req = F(replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=max_bytes, isolation_level=0,
            topics=[F.FetchTopic(topic=topic, partitions=[part] * times)])
    return codec.encode_request(1, 11, correlation_id, req)


def metric(app, name: str) -> int:
    with urllib.request.urlopen(f"{app.admin_url}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
    raise AssertionError(f"metric {name} missing")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_one_fetch_naming_a_partition_many_times_is_capped(make_appliance):
    """40 copies of one 16 MiB partition, each allowed 2 GiB: the response stays under the cap."""
    app = make_appliance().start()
    create_topic(app.bootstrap, "big", 1)
    fill(app.bootstrap, "big", 16)
    before = peak_rss_kib(app.proc.pid)
    with wire.connect(app.kafka_port, 60) as s:
        s.sendall(fetch_frame("big", 40, 2**31 - 1, 1))
        size = struct.unpack(">i", wire.recv_exact(s, 4))[0]
        corr, resp = codec.decode_response(1, 11, wire.recv_exact(s, size))
    assert corr == 1 and resp.error_code == 0
    assert size <= FETCH_CAP + 2 * MIB, f"one Fetch response of {size / MIB:.0f} MiB"
    growth = peak_rss_kib(app.proc.pid) - before
    assert growth < 3 * FETCH_CAP // 1024, f"peak RSS grew {growth // 1024} MiB for one fetch"


def test_stuck_consumers_keep_memory_bounded_and_others_unaffected(make_appliance):
    """8 consumers pipeline 64 fetches each (8 MiB allowed per fetch) and never read a byte."""
    app = make_appliance().start()
    create_topic(app.bootstrap, "bulk", 1)
    create_topic(app.bootstrap, "healthy", 1)
    fill(app.bootstrap, "bulk", 24)
    baseline_s = healthy_roundtrip(app.bootstrap, "healthy")
    before = peak_rss_kib(app.proc.pid)
    stuck = []
    for c in range(8):
        s = wire.connect(app.kafka_port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        s.setblocking(False)
        frames = b"".join(fetch_frame("bulk", 1, 8 * MIB, c * 100 + i) for i in range(64))
        try:
            s.sendall(frames)  # the broker stops reading once its pipeline is full
        except BlockingIOError:
            pass
        stuck.append(s)
    time.sleep(3)
    during_s = healthy_roundtrip(app.bootstrap, "healthy")
    growth_mib = (peak_rss_kib(app.proc.pid) - before) / 1024
    for s in stuck:
        s.close()
    report("stuck consumers (8 x 64 pipelined 8 MiB fetches, never read)", iterations=1, acknowledged=400, lost=0,
           duplicates=0, peak_rss_growth_mib=round(growth_mib, 1),
           healthy_roundtrip_s=round(during_s, 3), healthy_baseline_s=round(baseline_s, 3))
    # Bound: per stuck connection one encoded response (<= its 8 MiB limit) plus queued responses
    # that reference the log cache without copying: 8 x 8 MiB, with room for allocator slack.
    assert growth_mib < 8 * 8 * 1.5, f"peak RSS grew {growth_mib:.0f} MiB"
    assert during_s < max(5.0, 5 * baseline_s), f"healthy client took {during_s:.1f}s (baseline {baseline_s:.1f}s)"


IDLE = 2000  # idle connections per protocol


def test_thousands_of_idle_connections_cost_little_and_do_not_disturb(make_appliance):
    """2000 idle Kafka sockets and 2000 connected, silent MQTT clients; the appliance starts with the
    common soft fd limit of 1024 and must raise it itself to hold them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
    try:
        app = make_appliance().start()  # inherits the low limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < 2 * IDLE + 500:  # this process holds the client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * IDLE + 500), hard))
    assert "fd_limit_raised" in app.log_text()
    create_topic(app.bootstrap, "healthy", 1)
    baseline_s = healthy_roundtrip(app.bootstrap, "healthy")
    paho = PahoClient(app.mqtt_port, "healthy-mqtt", MQTT_5)
    assert paho.connected.wait(10) and paho.reason == 0
    paho.roundtrip()
    before = peak_rss_kib(app.proc.pid)
    idle = [wire.connect(app.kafka_port) for _ in range(IDLE)]
    try:
        wait_for(lambda: metric(app, "millstream_kafka_connections") >= IDLE, 30, f"{IDLE} accepted connections")
        after_kafka = peak_rss_kib(app.proc.pid)
        for i in range(IDLE):
            version = MQTT_5 if i % 2 else MQTT_311
            s = mqtt_socket(app.mqtt_port, f"idle-{i}", version)
            idle.append(s)
            assert read_connack(s, version).reason_code == 0
        wait_for(lambda: metric(app, "millstream_mqtt_connections_current") >= IDLE, 30, f"{IDLE} MQTT clients")
        after_mqtt = peak_rss_kib(app.proc.pid)
        during_s = healthy_roundtrip(app.bootstrap, "healthy")
        paho.roundtrip()
        assert wire.api_versions_ok(app.kafka_port)
    finally:
        for s in idle:
            s.close()
        paho.close()
    kafka_kib = (after_kafka - before) / IDLE
    mqtt_kib = (after_mqtt - after_kafka) / IDLE
    wait_for(lambda: metric(app, "millstream_kafka_connections") < 10, 30, "idle connections to close")
    report(f"{IDLE} idle Kafka + {IDLE} idle MQTT connections", iterations=1, acknowledged=450, lost=0,
           duplicates=0, rss_per_idle_kafka_connection_kib=round(kafka_kib, 1),
           rss_per_idle_mqtt_connection_kib=round(mqtt_kib, 1), healthy_roundtrip_s=round(during_s, 3))
    assert kafka_kib < 48, f"{kafka_kib:.0f} KiB per idle Kafka connection"
    assert mqtt_kib < 48, f"{mqtt_kib:.0f} KiB per idle MQTT connection"
    assert during_s < max(5.0, 5 * baseline_s)


def test_connection_flood_beyond_the_limit_is_refused_and_logged(make_appliance, tmp_path):
    config = tmp_path / "limits.toml"
    config.write_text("[kafka]\nmax_connections = 100\n")
    app = make_appliance(config=config).start()
    create_topic(app.bootstrap, "healthy", 1)  # its admin client has closed by now
    wait_for(lambda: metric(app, "millstream_kafka_connections") == 0, 10, "no connections")
    held = [wire.connect(app.kafka_port) for _ in range(100)]
    wait_for(lambda: metric(app, "millstream_kafka_connections") == 100, 10, "100 connections")
    flood = [wire.connect(app.kafka_port) for _ in range(300)]
    try:
        for s in flood:  # each is closed by the broker at once, before any request
            s.settimeout(10)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        # Connections that were already open still get answers.
        resp = wire.roundtrip(held[0], 18, 3, m.ApiVersionsRequest(client_software_name="t", client_software_version="1"))
        assert resp.error_code == 0
        assert "connection_refused" in app.log_text()
        assert "limit of 100 connections" in app.log_text()
        assert app.log_text().count("connection_refused") < 20, "one log line per refused connection"
    finally:
        for s in flood + held[50:]:
            s.close()
    # Below the limit again: a real client works.
    wait_for(lambda: metric(app, "millstream_kafka_connections") <= 50, 10, "connections to close")
    healthy_roundtrip(app.bootstrap, "healthy")
    for s in held[:50]:
        s.close()
