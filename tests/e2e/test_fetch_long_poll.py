"""A Fetch long poll is answered when data becomes durable, or when the broker drains: not at its
max_wait deadline."""

from __future__ import annotations

import signal
import struct
import threading
import time

from confluent_kafka import Producer

from appliance.kafka import records
from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m
from tests.e2e.test_confluent_kafka import create_topic
from tests.faults import kafka_wire as wire

MAX_WAIT_MS = 30_000  # far beyond the bounds below: an answer before it was not the deadline's


def send_fetch(s, topic: str, offset: int) -> None:
    F = m.FetchRequest
    part = F.FetchTopic.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=1 << 20)
    req = F(replica_id=-1, max_wait_ms=MAX_WAIT_MS, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
            topics=[F.FetchTopic(topic=topic, partitions=[part])])
    s.sendall(codec.encode_request(1, 11, 5, req))


def read_fetch(s):
    size = struct.unpack(">i", wire.recv_exact(s, 4))[0]
    corr, resp = codec.decode_response(1, 11, wire.recv_exact(s, size))
    assert corr == 5
    return resp.responses[0].partitions[0]


def test_fetch_waiting_for_data_is_answered_when_the_record_is_durable(make_appliance):
    app = make_appliance().start()
    create_topic(app.bootstrap, "lp", 1)
    with wire.connect(app.kafka_port, timeout=MAX_WAIT_MS / 1000 + 30) as s:
        send_fetch(s, "lp", 0)
        time.sleep(0.5)  # the fetch is parked in its long poll
        p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all", "linger.ms": 0})
        acked = threading.Event()
        p.produce("lp", value=b"wake up", partition=0, on_delivery=lambda err, msg: err is None and acked.set())
        assert p.flush(20) == 0 and acked.is_set()
        started = time.monotonic()
        part = read_fetch(s)
        waited = time.monotonic() - started
    assert part.error_code == 0 and part.high_watermark == 1
    assert [r.value for r in records.decode_records(bytes(part.records))] == [b"wake up"]
    assert waited < MAX_WAIT_MS / 1000 / 2, f"answered after {waited:.1f} s: by the deadline, not the data"


def test_draining_broker_answers_a_waiting_fetch_at_once(make_appliance):
    app = make_appliance().start()
    create_topic(app.bootstrap, "lp", 1)
    with wire.connect(app.kafka_port, timeout=MAX_WAIT_MS / 1000 + 30) as s:
        send_fetch(s, "lp", 0)
        time.sleep(0.5)
        started = time.monotonic()
        app.proc.send_signal(signal.SIGTERM)
        part = read_fetch(s)  # without the wake-up the drain would close the connection unanswered
        waited = time.monotonic() - started
    assert part.error_code == 0 and part.high_watermark == 0
    assert waited < MAX_WAIT_MS / 1000 / 2
    assert app.proc.wait(30) == 0
