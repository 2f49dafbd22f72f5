"""Live measurements, the cost comparison and the inventory over the admin API of a real appliance,
fed by real Kafka clients; and `millstream cost --admin` reading them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client.parser import text_string_to_metric_families

from appliance.admin.client import AdminAPIError, AdminClient
from appliance.inventory.measurements import measurements_from_json
from tests.admin.test_api import raw

REPO = Path(__file__).resolve().parents[2]
VALUE = 1000  # bytes per record value
RECORDS = 2000


def produce(app, topic: str, n: int, partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": app.bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, b"%06d" % i + b"x" * (VALUE - 6), partition=partition)
    assert p.flush(30) == 0


def consume_all(app, topic: str, group: str, n: int) -> None:
    c = Consumer({"bootstrap.servers": app.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got, deadline = 0, time.monotonic() + 60
        while got < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                got += 1
        assert got == n
        c.commit(asynchronous=False)
    finally:
        c.close()


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_measurements_count_produced_and_fetched_bytes(appliance):
    admin = AdminClient(appliance.admin_url)
    admin.create_topic("line3.telemetry", 2, {"retention.ms": str(86_400_000)})
    admin.create_topic("idle", 1)
    produce(appliance, "line3.telemetry", RECORDS // 2, partition=0)
    produce(appliance, "line3.telemetry", RECORDS // 2, partition=1)

    m = {t.topic: t for t in admin.measurements().topics}
    t = m["line3.telemetry"]
    stored = admin.topic("line3.telemetry").size_bytes
    # Batches are stored as the client sent them, so bytes in are exactly the bytes held.
    assert t.bytes_in_total == stored == t.retained_bytes
    assert RECORDS * VALUE <= stored < RECORDS * VALUE * 1.2
    assert t.bytes_in_per_s > 0 and t.partitions == 2 and t.retention_s == 86_400
    assert t.bytes_out_total == 0 and t.consumer_groups == 0
    assert m["idle"].bytes_in_total == 0 and m["idle"].bytes_in_per_s == 0 and m["idle"].retention_s == 604_800

    consume_all(appliance, "line3.telemetry", "historian", RECORDS)
    after = {t.topic: t for t in admin.measurements().topics}["line3.telemetry"]
    assert after.bytes_out_total >= stored  # every batch went out at least once
    assert after.consumer_groups == 1
    assert after.fan_out > 0 and after.bytes_out_per_s > 0

    # The served document is what `millstream cost --measurements` reads, unknown keys refused.
    status, body, _ = raw(appliance, "GET", "/api/v1/measurements")
    doc = json.loads(body)
    assert status == 200 and doc["window_s"] == 3600 and doc["bucket_s"] == 10 and doc["covered_s"] > 0
    parsed = measurements_from_json(doc).by_topic()["line3.telemetry"]
    assert parsed.bytes_in_total == stored

    _, text, _ = raw(appliance, "GET", "/metrics")
    samples = {(s.name, s.labels.get("topic")): s.value
               for f in text_string_to_metric_families(text.decode()) for s in f.samples}
    assert samples[("millstream_topic_bytes_in_total", "line3.telemetry")] == stored
    assert samples[("millstream_topic_bytes_out_total", "line3.telemetry")] == after.bytes_out_total

    r = cli("cost", "--admin", appliance.admin_url)
    assert r.returncode == 0, r.stderr
    assert "(a) broker-attached" in r.stdout and "(b) object storage" in r.stdout and "total / month" in r.stdout
    r = cli("cost", "--admin", appliance.admin_url, "--json")
    assert json.loads(r.stdout)["workload"]["topics"] == 2


def test_cost_over_http_with_projections(appliance):
    admin = AdminClient(appliance.admin_url)
    admin.create_topic("orders", 1)
    produce(appliance, "orders", 300)

    c = admin.cost()
    assert c.currency == "USD" and c.price_sheet and c.assumptions
    assert set(c.designs) == {"broker_attached", "object_storage"}
    for d in c.designs.values():
        assert d.total == pytest.approx(sum(line.monthly for line in d.lines))
        assert d.brokers >= 3 and d.lines
    assert c.broker_attached.by_category["storage"] > 0
    assert c.workload.topics == 1 and c.workload.ingress_bytes_per_s > 0
    assert c.measured_s and c.measured_s > 0 and c.projection == {} and c.baseline_totals == {}

    p = admin.cost(scale=10, retention="30d")
    assert p.projection == {"scale": 10.0, "retention_s": 30 * 86400.0}
    assert p.baseline_totals["object_storage"] > 0
    assert p.workload.retained_bytes == pytest.approx(p.workload.ingress_bytes_per_s * 30 * 86400)

    for query, message in (("scale=0", "scale must be a number > 0"), ("scale=abc", "scale must be a number"),
                           ("retention=soon", "retention: expected a duration")):
        status, body, _ = raw(appliance, "GET", "/api/v1/cost?" + query)
        assert status == 400 and message in json.loads(body)["error"]


def test_cost_uses_the_configured_price_sheet(make_appliance, tmp_path):
    sheet = tmp_path / "prices.toml"
    sheet.write_text('[sheet]\nname = "our contract"\ncurrency = "EUR"\n[object_storage]\ngb_month = 0.01\n')
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[cost]\nprice_sheet = "{sheet}"\n')
    app = make_appliance(config=cfg).start()
    c = AdminClient(app.admin_url).cost()
    assert c.price_sheet == "our contract" and c.currency == "EUR"
    assert next(x for x in c.object_storage.lines if x.item == "object storage").unit_price == 0.01

    sheet.write_text("[sheet]\nname = 3\n")  # read per request: a broken sheet is an answer, not a crash
    with pytest.raises(AdminAPIError) as e:
        AdminClient(app.admin_url).cost()
    assert e.value.status == 409 and "price sheet" in e.value.message


INVENTORY = """
[inventory]
worst_wan_outage = "12h"

[[streams]]
topic = "plant1.line3.*"
owner = "line3 controls"
placement = "plant_edge"
forwarded = true
retention = "2d"

[[streams]]
topic = "plant1.interlock"
local_action = true
placement = "cloud"
forwarded = true
retention = "1d"
"""


def test_inventory_lists_streams_findings_and_unowned_topics(make_appliance, tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text(INVENTORY)
    app = make_appliance(config=cfg).start()
    admin = AdminClient(app.admin_url)
    for name in ("plant1.line3.telemetry", "plant1.interlock", "scratch"):
        admin.create_topic(name, 1)
    produce(app, "plant1.line3.telemetry", 50)
    produce(app, "scratch", 20)

    inv = admin.inventory()
    assert [s.topic for s in inv.streams] == ["plant1.line3.*", "plant1.interlock"]
    line3 = inv.streams[0]
    assert line3.owner == "line3 controls" and line3.topics == ["plant1.line3.telemetry"]
    assert line3.bytes_in_per_s > 0 and line3.forwarded and line3.retention_s == 2 * 86400
    assert inv.unowned == ["scratch"]
    rules = {(f.severity, f.stream, f.rule) for f in inv.findings}
    assert ("error", "plant1.interlock", "local-action-over-wan") in rules
    assert ("warning", "plant1.interlock", "no-owner") in rules
    assert ("warning", "scratch", "unowned") in rules
    assert ("info", "plant1.line3.*", "outage-rate") in rules  # measured now, no longer "not measured yet"
    assert inv.findings[0].severity == "error" and inv.counts["error"] >= 1
    assert inv.worst_wan_outage_s == 12 * 3600

    st = admin.status()  # errors and warnings reach the status, and so the TUI's overview
    assert st.health == "warning"
    assert any(w.startswith("inventory: error: plant1.interlock:") for w in st.warnings)
    assert any("scratch" in w for w in st.warnings)


def test_no_inventory_declared_keeps_the_status_quiet(appliance):
    admin = AdminClient(appliance.admin_url)
    admin.create_topic("scratch", 1)
    produce(appliance, "scratch", 5)
    inv = admin.inventory()
    assert inv.streams == [] and inv.unowned == ["scratch"]  # listed, so the inventory can converge
    assert admin.status().warnings == []


def test_mqtt_ingest_counts_as_ingress(appliance):
    for i in range(3):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(appliance.mqtt_port), "-t", f"line1/m{i}",
                        "-m", "x" * 500, "-q", "1"], check=True, timeout=15)  # QoS 1: acknowledged once appended
    admin = AdminClient(appliance.admin_url)
    fed = [t for t in admin.measurements().topics if t.bytes_in_total]
    assert len(fed) == 1, fed  # the unmapped messages' default topic
    assert fed[0].bytes_in_total == admin.topic(fed[0].topic).size_bytes >= 3 * 500
