"""Object store outage: a real S3 server (moto_server) behind a link the test cuts and restores.

moto keeps its buckets in memory, so stopping it would lose what was uploaded; the outage is
injected instead by a TCP proxy between the appliance and moto (tests/faults/proxy.py).

Under continuous confluent-kafka load (acks=all, idempotence) the link is cut: the WAL keeps
taking records until its disk budget is spent, then producers are pushed back with
KAFKA_STORAGE_ERROR (retriable: the client retries, nothing fails) and an MQTT 5 QoS 1 publisher
gets PUBACK 0x97 (quota exceeded); the admin API shows the outage while it lasts. In the last
outage the appliance is also killed (-9) and restarted while the store is still down. When the link
returns, uploads resume, the WAL drains below its budget, the producer's retries land exactly
once, and every acknowledged record is read back byte for byte in send order.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt

from appliance.admin.client import AdminClient
from tests.e2e.test_confluent_kafka import create_topic
from tests.faults import kafka_wire as wire
from tests.faults.load import IdempotentLoad, read_partitions, verify
from tests.faults.proxy import TcpProxy
from tests.faults.scale import knob, percentile, report
from tests.storage.objects.moto_server import MotoServer, moto_fixture

TOPIC = "store.outage"
PROBE = "store.outage.probe"  # raw produces that see the exact error code (kept out of TOPIC)
PARTITIONS = 3
BUDGET = 6 << 20
OUTAGES = knob("FAULTS_STORE_OUTAGES")

CONFIG = f"""
[storage]
wal_budget = {BUDGET}
wal_segment_size = "512KiB"
group_commit_bytes = "256KiB"
upload_bytes = "256KiB"
upload_interval = "200ms"
stream_object_bytes = "256KiB"
maintenance_interval = "1s"
"""


moto = moto_fixture()


def _wait(what: str, cond, timeout: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _storage(app):
    with AdminClient(app.admin_url, timeout=10) as admin:
        return admin.storage()


def _status(app):
    with AdminClient(app.admin_url, timeout=10) as admin:
        return admin.status()


def _mqtt_puback_reason(port: int, payload: bytes = b"21.5", timeout: float = 20.0) -> int:
    """Publish one QoS 1 message (MQTT 5) and return the PUBACK's reason code."""
    got: list[int] = []
    acked = threading.Event()
    connected = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-probe", protocol=mqtt.MQTTv5)
    c.on_connect = lambda *args: connected.set()

    def on_publish(_c, _u, _mid, reason_code, _props):
        got.append(reason_code.value)
        acked.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert connected.wait(10), "MQTT connect"
        c.publish("plant1/line3/press/temp", payload, qos=1)
        assert acked.wait(timeout), "no PUBACK"
        return got[0]
    finally:
        c.disconnect()
        c.loop_stop()


def test_object_store_outage_pushes_back_then_drains_with_nothing_lost(make_appliance, tmp_path, moto):
    link = TcpProxy(moto.port).start()
    # timeout=3: a black-holed store (connections hang) counts as down after ~6 s, not the default ~60 s
    url = f"s3://outage/plant?endpoint=http://127.0.0.1:{link.port}&region=us-east-1&timeout=3"
    cfg = tmp_path / "outage.toml"
    cfg.write_text(CONFIG)
    app = make_appliance("plant", config=cfg, extra_args=["--object-store", url],
                         env=MotoServer.credentials_env()).start()
    create_topic(app.bootstrap, TOPIC, PARTITIONS)
    create_topic(app.bootstrap, PROBE, 1)
    load = IdempotentLoad(app.bootstrap, TOPIC, PARTITIONS, max_in_flight_records=3000).start()
    try:
        assert load.wait_for_acks(2000, 60), f"no steady load: {load.errors[:3]}"
        _wait("a first upload", lambda: _storage(app).extra.get("uploads", 0) >= 1)
        assert _mqtt_puback_reason(app.mqtt_port) == 0  # healthy: accepted

        drain_times, pushed_back_at = [], []
        for outage in range(OUTAGES):
            link.cut("reset" if outage % 2 == 0 else "blackhole")
            cut_at_acks = load.acked_count()
            # Ingest goes on into the WAL, then the budget is spent and producers are pushed back.
            _wait("the WAL budget to be spent",
                  lambda: wire.produce_error(app.kafka_port, PROBE, 0, [b"probe" * 1000]) == 56, timeout=90,
                  every=0.3)
            pushed_back_at.append(load.acked_count())
            assert pushed_back_at[-1] > cut_at_acks, "no record was taken into the WAL during the outage"
            st = _wait("the outage to show in admin storage", lambda: (s := _storage(app)).extra["store_error"] and s,
                       timeout=60)
            # The budget counts WAL segment bytes on disk; a segment goes only once all of it is
            # uploaded, so part of what it holds may already be in the store.
            assert st.wal_bytes > BUDGET * 0.9 and st.unuploaded_bytes > 0, st
            assert st.last_error and "S3" in st.last_error, st.last_error
            backlog = st.unuploaded_bytes
            status = _status(app)
            assert status.health == "error" and any(a.kind == "object_store" for a in status.alerts), status.warnings
            # No acks while pushed back; an MQTT 5 QoS 1 publisher is told "quota exceeded".
            stalled = load.acked_count()
            assert _mqtt_puback_reason(app.mqtt_port, bytes(64 << 10)) == 0x97  # larger than what is left
            time.sleep(1.0)
            assert load.acked_count() <= stalled + 50, "acks kept coming with the budget spent"
            assert app.proc.poll() is None, "appliance exited during the outage"
            assert wire.api_versions_ok(app.kafka_port)
            if outage == OUTAGES - 1:
                # kill -9 in the middle of the outage: the node restarts from its WAL and cached
                # manifest without the store (after waiting OFFLINE_START_WAIT for it), and is
                # still pushed back; nothing acknowledged is lost.
                app.kill()
                app.start(timeout=60)
                assert "starting_from_cached_manifest" in app.log_text()
                _wait("the outage after the restart", lambda: _storage(app).extra["store_error"])
                assert wire.produce_error(app.kafka_port, PROBE, 0, [b"probe" * 1000]) == 56
                stalled = load.acked_count()
                backlog = _storage(app).unuploaded_bytes

            link.restore()
            restored = time.monotonic()
            assert load.wait_for_acks(stalled + 1000, 90), f"no acks after the store returned: {load.errors[:3]}"
            _wait("the WAL to drain", lambda half=backlog // 2: (s := _storage(app)).unuploaded_bytes < half
                  and s.wal_bytes < BUDGET * 0.9, timeout=90)
            drain_times.append(time.monotonic() - restored)
            # (a disk-budget warning may remain while the WAL drains under load; the outage is gone)
            _wait("the outage to clear in status", lambda: not any(a.kind in ("object_store", "storage")
                                                                   for a in _status(app).alerts), timeout=30)
            assert _storage(app).extra["store_error"] is None
            assert _mqtt_puback_reason(app.mqtt_port) == 0
    finally:
        undelivered = load.stop(120)
    assert undelivered == 0, f"{undelivered} records never delivered"
    assert not load.errors, f"producer errors: {load.errors[:5]}"
    verdict = verify(load.acked, read_partitions(app.bootstrap, TOPIC, PARTITIONS))
    assert verdict.acknowledged == load.sent
    assert not verdict.problems(), verdict.problems()
    assert "Traceback" not in app.log_text()
    app.kill()
    link.close()
    report("object store outage (S3 link cut until the WAL budget is spent)", iterations=OUTAGES,
           acknowledged=verdict.acknowledged, lost=len(verdict.lost), duplicates=verdict.duplicates,
           wal_budget_mib=BUDGET >> 20, acks_before_push_back=pushed_back_at,
           recovery_p50_s=round(percentile(drain_times, 50), 3), recovery_p99_s=round(percentile(drain_times, 99), 3))
