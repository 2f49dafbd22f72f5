"""`millstream clients|uplink|certs|rules reload|status` against real appliances over the admin API
(a segmented node with mTLS clients, and a plant-to-cloud pair for the uplink)."""

from __future__ import annotations

import json
import stat
import time

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer

from tests.admin.test_cli import millstream
from tests.security.segmented import Segmented, pki_issue
from tests.security.test_segmentation_e2e import Paho
from tests.uplink.helpers import produce, start_pair


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    app = Segmented(tmp_path_factory.mktemp("cliops") / "data").start()
    try:
        yield app
    finally:
        app.stop()


def url(node: Segmented) -> str:
    return f"http://127.0.0.1:{node.ports['admin']}"


def ok(r) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def row(text: str, needle: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if needle in line)


def test_certs_issue_list_revoke_and_the_expiry_warning_in_status(node, tmp_path):
    out = ok(millstream(url(node), "certs", "issue", "--zone", "plant-apps", "--id", "hist-9", "--days", "3",
                        "--out", str(tmp_path / "hist-9")))
    serial = out.split("serial ", 1)[1].split()[0]
    assert "for plant-apps/hist-9, valid until" in out
    assert str(node.data_dir / "pki" / "out" / "plant-apps.hist-9" / "hist-9.crt") in out  # where the files went
    key = tmp_path / "hist-9" / "hist-9.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "PRIVATE KEY" in key.read_text()

    listed = ok(millstream(url(node), "certs"))
    assert listed.splitlines()[0].split() == ["SERIAL", "ZONE", "ID", "KIND", "NOT", "AFTER", "DAYS", "STATUS"]
    assert row(listed, serial)[1:4] == ["plant-apps", "hist-9", "client"]
    assert row(listed, serial)[-3:] == ["3", "valid", "(expiring)"]

    status = ok(millstream(url(node), "status"))
    assert "health    warning" in status
    assert any(line.startswith("warning   certificate plant-apps/hist-9 expires in 3 days")
               for line in status.splitlines()), status
    kinds = {a["kind"] for a in json.loads(ok(millstream(url(node), "status", "--json")))["alerts"]}
    assert "certificate_expiring" in kinds

    out = ok(millstream(url(node), "certs", "revoke", serial, "--reason", "superseded"))
    assert out.splitlines()[0] == f"revoked {serial} (plant-apps/hist-9), reason superseded"
    certs = {c["serial"]: c for c in json.loads(ok(millstream(url(node), "certs", "list", "--json")))["certificates"]}
    assert certs[serial]["revoked"] and certs[serial]["status"] == "revoked"
    assert "hist-9" not in ok(millstream(url(node), "status"))  # revoked: no longer a warning

    r = millstream(url(node), "certs", "revoke", "ffffffffffff")
    assert r.returncode == 1 and r.stderr.startswith("millstream: serial 'ffffffffffff' is not in the inventory")


def test_rules_reload_from_the_command_line(node):
    good = node.rules_path.read_text()
    try:
        out = ok(millstream(url(node), "rules", "reload"))
        assert out.strip() == f"rules reloaded from {node.rules_path}: 4 zones, 6 conduits, 0 deny rules"
        node.rules_path.write_text(good + '\n[[conduits]]\nname = "broken"\nfrom = "nowhere"\n')
        r = millstream(url(node), "rules", "reload")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.startswith("millstream: rules rejected, the previous rules stay in force: ")
        assert "conduit 'broken': missing required key 'to'" in r.stderr
        assert "rules reload rejected" in ok(millstream(url(node), "status"))
    finally:
        node.rules_path.write_text(good)
    ok(millstream(url(node), "rules", "reload"))
    assert "rules reload rejected" not in ok(millstream(url(node), "status"))


def test_clients_shows_identity_and_zone(node):
    press7 = pki_issue(node.data_dir, "cell-line3", "press-7")
    mes = pki_issue(node.data_dir, "plant-apps", "mes-2")
    dev = Paho(node, press7, "press-7-cli", mqtt.MQTTv5)
    c = Consumer({"bootstrap.servers": node.addr("kafka-plant"), "security.protocol": "SSL",
                  "ssl.ca.location": str(mes.ca_path), "ssl.certificate.location": str(mes.cert_path),
                  "ssl.key.location": str(mes.key_path), "group.id": "mes-2-cli", "client.id": "mes-2-reader"})
    try:
        c.list_topics(timeout=10)  # an open, authenticated connection
        out = ok(millstream(url(node), "clients"))
        mqtt_row = row(out, "press-7-cli")
        assert mqtt_row[1] == "online" and "cell-line3/press-7" in mqtt_row and "cell-line3" in mqtt_row[4:]
        kafka_row = row(out, "mes-2-reader")
        assert "kafka-plant" in kafka_row and "plant-apps/mes-2" in kafka_row and "plant-apps" in kafka_row
        data = json.loads(ok(millstream(url(node), "clients", "--json")))
        assert any(s["client_id"] == "press-7-cli" and s["zone"] == "cell-line3" for s in data["mqtt"])
    finally:
        dev.close()
        c.close()


def test_uplink_status_pause_resume_and_the_backlog_warning(make_appliance, tmp_path, appliance):
    r = millstream(appliance.admin_url, "uplink", "pause")  # a node without an uplink says so
    assert r.returncode == 1 and r.stderr.startswith("millstream: the uplink is not enabled on this node")
    assert "uplink    off on this node" in ok(millstream(appliance.admin_url, "uplink"))

    plant, cloud = start_pair(make_appliance, tmp_path, [{"topic": "alarms", "priority": 0}])
    ok(millstream(plant.admin_url, "topics", "create", "alarms", "-p", "1"))
    deadline = time.monotonic() + 30
    while "connected to" not in (out := ok(millstream(plant.admin_url, "uplink", "status"))):
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    assert f"uplink    connected to {cloud.bootstrap}" in out

    out = ok(millstream(plant.admin_url, "uplink", "pause"))
    assert out.splitlines()[:2] == ["uplink paused: records are kept here until resumed",
                                    f"uplink    paused to {cloud.bootstrap}"]
    produce(plant.bootstrap, "alarms", 5)
    deadline = time.monotonic() + 30
    while "backlog   5 records" not in (out := ok(millstream(plant.admin_url, "uplink"))):
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    assert row(out, "plant1.alarms")[:5] == ["alarms", "plant1.alarms", "0", "1", "5"]
    status = ok(millstream(plant.admin_url, "status"))
    assert "warning   uplink paused by an operator: 5 records" in status

    out = ok(millstream(plant.admin_url, "uplink", "resume", "--json"))
    assert json.loads(out)["paused"] is False
    deadline = time.monotonic() + 30
    while "backlog   0 records" not in (out := ok(millstream(plant.admin_url, "uplink"))):
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    assert "uplink paused" not in ok(millstream(plant.admin_url, "status"))  # resumed: the warning is gone
