"""Segmentation end to end: real clients with certificates from `pki issue`, over real TLS, against
a real appliance process with zone/conduit rules (see segmented.py for the listeners and rules)."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import struct
import time
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import TopicAuthorizationFailedError

from appliance.security.pki import Pki
from tests.security.segmented import Segmented, pki_issue


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    app = Segmented(tmp_path_factory.mktemp("seg") / "data").start()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def mes(node):
    return pki_issue(node.data_dir, "plant-apps", "mes-1")


@pytest.fixture(scope="module")
def press7(node):
    return pki_issue(node.data_dir, "cell-line3", "press-7")


def _tls(cert) -> dict:
    return {"security.protocol": "SSL", "ssl.ca.location": str(cert.ca_path),
            "ssl.certificate.location": str(cert.cert_path), "ssl.key.location": str(cert.key_path)}


def _produce(conf: dict, topic: str, values: list[bytes]) -> list:
    reports: list = []
    p = Producer({**conf, "message.timeout.ms": 8000, "enable.idempotence": True})
    for v in values:
        p.produce(topic, v, callback=lambda err, msg: reports.append((err, msg)))
    p.flush(15)
    return reports


def test_confluent_allowed_produce_and_consume(node, mes):
    conf = {"bootstrap.servers": node.addr("kafka-plant"), **_tls(mes)}
    reports = _produce(conf, "apps.mes-1.orders", [b"o1", b"o2", b"o3"])
    assert [err for err, _ in reports] == [None, None, None]
    c = Consumer({**conf, "group.id": "mes-1-orders", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["apps.mes-1.orders"])
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert got == [b"o1", b"o2", b"o3"]


def test_confluent_topic_outside_the_conduit_is_denied_and_hidden(node, mes):
    # the topic exists (made on the loopback listener), but the plant-apps conduit covers apps.* only
    local = _produce({"bootstrap.servers": f"127.0.0.1:{node.ports['kafka-local']}"}, "secret.recipes", [b"r"])
    assert [err for err, _ in local] == [None]
    conf = {"bootstrap.servers": node.addr("kafka-plant"), **_tls(mes)}
    reports = _produce(conf, "secret.recipes", [b"x"])
    assert reports[0][0] is not None and reports[0][0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    c = Consumer({**conf, "group.id": "mes-1-x"})
    md = c.list_topics(timeout=10)
    assert "apps.mes-1.orders" in md.topics and "secret.recipes" not in md.topics
    # Metadata advertises the listener the client came in on
    assert {(b.host, b.port) for b in md.brokers.values()} == {("localhost", node.ports["kafka-plant"])}
    c.close()


def test_kafka_python_allowed_and_denied(node, mes):
    common = dict(bootstrap_servers=node.addr("kafka-plant"), security_protocol="SSL", ssl_cafile=str(mes.ca_path),
                  ssl_certfile=str(mes.cert_path), ssl_keyfile=str(mes.key_path))
    p = KafkaProducer(**common, acks="all")
    p.send("apps.mes-1.kp", b"hello").get(timeout=15)
    with pytest.raises(TopicAuthorizationFailedError):
        p.send("secret.recipes", b"nope").get(timeout=15)
    p.close()
    c = KafkaConsumer("apps.mes-1.kp", **common, group_id="mes-1-kp", auto_offset_reset="earliest",
                      consumer_timeout_ms=10000)
    assert next(iter(c)).value == b"hello"
    c.close()


def test_kafka_conduit_limits_payload_size_and_rate(node, mes):
    conf = {"bootstrap.servers": node.addr("kafka-plant"), **_tls(mes)}
    (big,) = _produce(conf, "apps.mes-1.big", [b"x" * (100 << 10)])  # conduit max_payload: 64KiB
    assert big[0] is not None and big[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    t0 = time.monotonic()
    reports = _produce({**conf, "linger.ms": 50}, "apps.slow.counts", [b"%d" % i for i in range(120)])
    elapsed = time.monotonic() - t0
    assert [err for err, _ in reports] == [None] * 120
    assert elapsed >= 1.2, elapsed  # 50 msgs/s: a burst of 50, then 70 more take 1.4 s


def _handshake(node, cert_path, key_path, ca_path) -> tuple[str, int]:
    """A TLS client to kafka-plant; returns (what the client saw, its local port)."""
    ctx = ssl.create_default_context(cafile=str(ca_path))
    ctx.load_cert_chain(str(cert_path), str(key_path))
    with socket.create_connection(("127.0.0.1", node.ports["kafka-plant"]), timeout=10) as raw:
        port = raw.getsockname()[1]
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(_api_versions_request())
                data = s.recv(4)  # TLS 1.3: the server's verdict arrives after our Finished
                return ("open" if data else "closed"), port
        except (ssl.SSLError, ConnectionError) as e:
            return str(e), port


def _api_versions_request() -> bytes:
    body = struct.pack(">hhih", 18, 0, 7, 4) + b"test"
    return struct.pack(">i", len(body)) + body


def test_foreign_expired_and_revoked_certificates_are_refused_at_the_handshake(node, tmp_path):
    foreign = Pki(tmp_path / "other")
    foreign.init(site="evil")
    bad = foreign.issue("plant-apps", "mes-1")
    pki = Pki(node.data_dir)
    now = datetime.now(timezone.utc)
    expired = pki.issue("plant-apps", "old-1", not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    revoked = pki.issue("plant-apps", "lost-1")
    pki.revoke(revoked.record.serial, reason="key_compromise")
    ca = pki.ca_cert_path
    for cert, reason, said in ((bad, "unknown_ca", "unknown ca"), (expired, "expired", "certificate expired"),
                               (revoked, "revoked", "certificate revoked")):
        seen, port = _handshake(node, cert.cert_path, cert.key_path, ca)
        assert said in seen.lower(), seen
        line = node.wait_log(f"peer=127.0.0.1:{port} reason=")
        assert "event=handshake_refused listener=kafka-plant" in line and f"reason={reason}" in line
    refusals = {(r["listener"], r["reason"]): r["count"] for r in node.get("/api/v1/security")["handshake_refusals"]}
    assert all(refusals.get(("kafka-plant", r), 0) >= 1 for r in ("unknown_ca", "expired", "revoked"))


def test_plaintext_bytes_to_a_tls_port_never_reach_the_broker(node):
    before = node.get("/api/v1/status")["kafka"]["requests_total"]
    with socket.create_connection(("127.0.0.1", node.ports["kafka-plant"]), timeout=10) as s:
        port = s.getsockname()[1]
        s.sendall(_api_versions_request())
        assert s.recv(4096)[:1] in (b"", b"\x15")  # nothing, or a TLS alert record: never a Kafka response
    assert "reason=not_tls" in node.wait_log(f"peer=127.0.0.1:{port} reason=")
    assert node.get("/api/v1/status")["kafka"]["requests_total"] == before


class Paho:
    """A paho-mqtt client over mTLS, driven by its own network thread."""

    def __init__(self, node, cert, client_id: str, protocol: int) -> None:
        self.acks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.connected: list[int] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        c.tls_set(ca_certs=str(cert.ca_path), certfile=str(cert.cert_path), keyfile=str(cert.key_path))
        c.on_connect = lambda cl, ud, flags, rc, props: self.connected.append(int(getattr(rc, "value", rc)))
        c.on_publish = lambda cl, ud, mid, rc, props: self.acks.__setitem__(mid, int(getattr(rc, "value", rc)))
        c.on_subscribe = lambda cl, ud, mid, rcs, props: self.subacks.__setitem__(
            mid, [int(getattr(r, "value", r)) for r in rcs])
        self.client = c
        c.connect("localhost", node.ports["mqtt-cell"], keepalive=30)
        c.loop_start()
        self._wait(lambda: self.connected)
        assert self.connected == [0]

    @staticmethod
    def _wait(cond, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.02)
        raise AssertionError("timed out")

    def publish(self, topic: str, qos: int = 1) -> int:
        mid = self.client.publish(topic, b"21.5", qos=qos).mid
        self._wait(lambda: mid in self.acks)
        return self.acks[mid]

    def subscribe(self, flt: str, qos: int = 1) -> list[int]:
        _, mid = self.client.subscribe(flt, qos)
        self._wait(lambda: mid in self.subacks)
        return self.subacks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_paho_mqtt5_over_mtls_own_path_only(node, press7):
    dev = Paho(node, press7, "press-7", mqtt.MQTTv5)
    try:
        assert dev.publish("uns/acme/plant1/line3/press-7/temp") == 0
        assert dev.publish("uns/acme/plant1/line3/press-9/temp") == 0x87  # another device's path
        # QoS 2: PUBREC 0x87 ends the flow (spec); paho 2.2 still sends PUBREL and reports our PUBCOMP 0x92
        assert dev.publish("uns/acme/plant1/line3/press-9/temp", qos=2) in (0x87, 0x92)
        assert dev.subscribe("uns/acme/plant1/line3/press-7/cmd/#", 2) == [1]  # granted the conduit's max QoS
        assert dev.subscribe("uns/acme/plant1/#") == [0x87]  # outside the conduit
        assert dev.publish("uns/acme/plant1/line3/press-7/temp") == 0  # still connected and allowed
    finally:
        dev.close()


def test_paho_mqtt311_subscribe_denied_with_0x80(node, press7):
    dev = Paho(node, press7, "press-7-v311", mqtt.MQTTv311)
    try:
        assert dev.subscribe("uns/acme/plant1/#") == [0x80]
        assert dev.publish("uns/acme/plant1/line3/press-9/temp") == 0  # 3.1.1 cannot say no: acked, dropped
    finally:
        dev.close()


def test_denials_are_in_the_audit_log_and_counters(node, mes, press7):
    _produce({"bootstrap.servers": node.addr("kafka-plant"), **_tls(mes)}, "secret.audit", [b"x"])
    dev = Paho(node, press7, "press-7-audit", mqtt.MQTTv5)
    assert dev.publish("uns/acme/plant1/line3/press-9/audit") == 0x87
    dev.close()
    sec = node.get("/api/v1/security")
    assert sec["authorization"] == "on"
    den = sec["denials"]
    recent = den["recent"]
    assert any(d["identity"] == "plant-apps/mes-1" and d["listener"] == "kafka-plant" and d["op"] in ("produce", "describe")
               and d["resource"] == "secret.audit" for d in recent), recent
    assert any(d["identity"] == "cell-line3/press-7" and d["listener"] == "mqtt-cell" and d["op"] == "publish"
               and d["resource"] == "uns/acme/plant1/line3/press-9/audit" and d["serial"] == press7.record.serial
               for d in recent)
    assert den["by_listener"]["kafka-plant"] >= 1 and den["by_listener"]["mqtt-cell"] >= 1
    assert den["total"] == sum(den["by_op"].values())
    with __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{node.ports['admin']}/metrics") as r:
        metrics = r.read().decode()
    line = next(x for x in metrics.splitlines() if x.startswith("millstream_security_denials_total "))
    assert float(line.split()[1]) >= 2


def test_admin_issues_lists_and_revokes_certificates(node):
    status, issued = node.post("/api/v1/certificates", {"zone": "plant-apps", "id": "hist-1", "days": 30})
    assert status == 201 and "BEGIN CERTIFICATE" in issued["certificate_pem"]
    certs = {c["serial"]: c for c in node.get("/api/v1/certificates")["certificates"]}
    assert certs[issued["serial"]]["identity"] == "plant-apps/hist-1" and not certs[issued["serial"]]["revoked"]
    ca = Pki(node.data_dir).ca_cert_path
    seen, _ = _handshake(node, issued["cert_path"], issued["key_path"], ca)
    assert seen == "open"
    status, out = node.post("/api/v1/certificates/revoke", {"serial": issued["serial"], "reason": "superseded"})
    assert status == 200 and out["revoked"][0]["serial"] == issued["serial"]
    assert {c["serial"]: c for c in node.get("/api/v1/certificates")["certificates"]}[issued["serial"]]["revoked"]
    seen, _ = _handshake(node, issued["cert_path"], issued["key_path"], ca)
    assert "certificate revoked" in seen.lower()


def test_rules_reload_by_sighup_and_admin_keeps_connections(node, mes, press7):
    dev = Paho(node, press7, "press-7-reload", mqtt.MQTTv5)
    try:
        good = node.rules_path.read_text()
        node.rules_path.write_text(good + "\n[[conduits]]\nname = \"broken\"\nfrom = \"nowhere\"\n")
        status, err = node.post("/api/v1/rules/reload", {})
        assert status == 400 and re.search(r"rules\.toml:\d+: conduit 'broken': missing required key 'to'", err["error"])
        node.proc.send_signal(signal.SIGHUP)
        assert "rules.toml:" in node.wait_log("event=rules_reload_rejected")
        assert dev.publish("uns/acme/plant1/line3/press-7/temp") == 0  # old rules in force
        # a valid file that also lets press-7 publish under press-9 (say, a replacement device)
        node.rules_path.write_text(good.replace('topics = ["uns/acme/plant1/line3/{id}/#"]',
                                                'topics = ["uns/acme/plant1/line3/{id}/#", "uns/acme/plant1/line3/press-9/#"]'))
        node.proc.send_signal(signal.SIGHUP)
        Paho._wait(lambda: node.get("/api/v1/security")["reloads"] >= 1)
        assert dev.publish("uns/acme/plant1/line3/press-9/temp") == 0  # same connection, new rules
        assert node.get("/api/v1/security")["last_reload_error"] is None
    finally:
        node.rules_path.write_text(good)
        dev.close()
