"""Acknowledged data survives kill -9; idempotent producers neither lose nor duplicate across restarts."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer

from tests.e2e.test_confluent_kafka import create_topic


def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 40) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        msg = c.poll(0.3)
        if msg is None:
            if len(out) >= expected and time.monotonic() - idle_since > 2:
                break
            continue
        assert msg.error() is None, msg.error()
        idle_since = time.monotonic()
        out.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
    c.close()
    return out


def test_kill_9_during_produce_keeps_every_acknowledged_record(make_appliance):
    app = make_appliance().start()
    create_topic(app.bootstrap, "motor.current", 3)
    acked: list[tuple[int, int, bytes, bytes]] = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        if err is None:
            with lock:
                acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 5000, "retries": 0, "enable.idempotence": False})
    deadline = time.monotonic() + 20
    i = 0
    while time.monotonic() < deadline and len(acked) < 3000:
        p.produce("motor.current", key=f"m{i % 9}".encode(), value=(f"sample-{i}-".encode() * 20),
                  on_delivery=on_delivery)
        p.poll(0)
        i += 1
        if i % 200 == 0:
            p.poll(0.01)
    app.kill()  # SIGKILL with requests in flight
    p.flush(10)
    with lock:
        before = sorted(acked)
    assert len(before) >= 1000
    app.start()
    got = {(pp, o): (k, v) for pp, o, k, v in _read_all(app.bootstrap, "motor.current", len(before))}
    missing = [(pp, o) for pp, o, k, v in before if got.get((pp, o)) != (k, v)]
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {missing[:3]}"
    # Offsets continue after the last durable batch.
    ends = {pp: max(o for (q, o) in got if q == pp) for pp in range(3)}
    p2 = Producer({"bootstrap.servers": app.bootstrap, "acks": "all"})
    after = []
    p2.produce("motor.current", key=b"m0", value=b"after-restart", partition=0,
               on_delivery=lambda err, msg: after.append(msg.offset()))
    p2.flush(10)
    assert after == [ends[0] + 1]


def test_idempotent_producer_across_restarts_no_loss_no_duplicates(make_appliance):
    app = make_appliance().start()
    create_topic(app.bootstrap, "alarms", 2)
    errors = []
    p = Producer({"bootstrap.servers": app.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": 60000, "reconnect.backoff.ms": 50,
                  "reconnect.backoff.max.ms": 200})
    total = 3000
    sent = 0

    def pump(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            p.produce("alarms", key=f"a{sent % 4}".encode(), value=f"alarm-{sent}".encode(),
                      on_delivery=lambda err, msg: err and errors.append(err))
            sent += 1
            p.poll(0)

    pump(1000)
    app.stop()  # graceful restart with data in flight
    app.start()
    pump(1000)
    time.sleep(0.05)
    app.kill()  # crash with data in flight
    app.start()
    pump(total - sent)
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    records = _read_all(app.bootstrap, "alarms", total)
    values = [v for _, _, _, v in records]
    assert len(values) == total, f"{len(values)} records for {total} sent"
    assert sorted(values, key=lambda v: int(v.split(b"-")[1])) == [f"alarm-{i}".encode() for i in range(total)]
    per_key: dict[bytes, list[int]] = {}
    for _, _, k, v in records:
        per_key.setdefault(k, []).append(int(v.split(b"-")[1]))
    assert all(seq == sorted(seq) for seq in per_key.values())
