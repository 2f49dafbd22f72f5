"""The admin API over real HTTP against a real appliance process, checked with real Kafka clients."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient as KafkaAdmin
from confluent_kafka.admin import ConfigResource, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from appliance.admin.client import AdminAPIError, AdminClient, AdminUnavailable
from appliance.admin.server import MAX_BODY_BYTES


def kafka_admin(app) -> KafkaAdmin:
    return KafkaAdmin({"bootstrap.servers": app.bootstrap})


def kafka_topics(app) -> dict:
    return kafka_admin(app).list_topics(timeout=10).topics


def produce(app, topic: str, values: list[bytes], partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": app.bootstrap, "linger.ms": 0})
    for v in values:
        p.produce(topic, v, partition=partition)
    assert p.flush(15) == 0


def raw(app, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", app.admin_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def test_status_describes_the_running_node(appliance):
    with AdminClient(appliance.admin_url) as c:
        st = c.status()
    assert st.role == "plant"
    assert st.node_id == 1
    assert st.version
    assert st.health == "ok" and st.warnings == []
    assert 0 <= st.uptime_s < 60
    listeners = {listener.name: listener.address for listener in st.listeners}
    assert listeners["kafka"].endswith(f":{appliance.kafka_port}")
    assert listeners["admin"] == f"127.0.0.1:{appliance.admin_port}"
    assert st.cluster_id


def test_topic_created_by_the_api_is_served_to_kafka_clients(appliance):
    c = AdminClient(appliance.admin_url)
    info = c.create_topic("plant1.line3.telemetry", 3, {"retention.ms": "3600000"})
    assert [p.partition for p in info.partitions] == [0, 1, 2]
    assert info.configs["retention.ms"] == "3600000" and info.overrides == ["retention.ms"]

    topics = kafka_topics(appliance)
    assert "plant1.line3.telemetry" in topics
    assert len(topics["plant1.line3.telemetry"].partitions) == 3

    produce(appliance, "plant1.line3.telemetry", [b"a", b"b", b"c", b"d"], partition=1)
    t = c.topic("plant1.line3.telemetry")
    assert [(p.log_start, p.high_watermark) for p in t.partitions] == [(0, 0), (0, 4), (0, 0)]
    assert t.partitions[1].size_bytes > 0 and t.records == 4
    assert c.status().records_total == 4

    altered = c.alter_topic("plant1.line3.telemetry", {"retention.ms": "60000"})
    assert altered.configs["retention.ms"] == "60000"
    res = ConfigResource(ConfigResource.Type.TOPIC, "plant1.line3.telemetry")
    kadmin = kafka_admin(appliance)  # keep the handle alive while its future resolves
    configs = kadmin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "60000"

    c.delete_topic("plant1.line3.telemetry")
    assert "plant1.line3.telemetry" not in kafka_topics(appliance)
    assert [t.name for t in c.topics()] == []


def test_topic_created_by_a_kafka_client_is_listed(appliance):
    kadmin = kafka_admin(appliance)
    kadmin.create_topics([NewTopic("orders", 2, config={"cleanup.policy": "compact"})])["orders"].result(10)
    with AdminClient(appliance.admin_url) as c:
        (t,) = c.topics()
    assert t.name == "orders" and len(t.partitions) == 2
    assert t.configs["cleanup.policy"] == "compact"


def test_alter_adds_partitions_and_resets_configs(appliance):
    with AdminClient(appliance.admin_url) as c:
        c.create_topic("t", 1, {"retention.ms": "1000"})
        t = c.alter_topic("t", {"retention.ms": None}, partitions=3)
    assert len(t.partitions) == 3
    assert t.configs["retention.ms"] == "604800000" and t.overrides == []
    assert len(kafka_topics(appliance)["t"].partitions) == 3


def test_errors_are_json_with_http_codes(appliance):
    c = AdminClient(appliance.admin_url)
    c.create_topic("dup", 1)

    def error(fn, *args, **kwargs) -> AdminAPIError:
        with pytest.raises(AdminAPIError) as e:
            fn(*args, **kwargs)
        return e.value

    assert error(c.create_topic, "dup").status == 409
    assert error(c.topic, "missing").status == 404
    assert error(c.delete_topic, "missing").status == 404
    assert error(c.alter_topic, "missing", {"retention.ms": "1"}).status == 404
    bad_name = error(c.create_topic, "no spaces please")
    assert bad_name.status == 400 and "characters" in bad_name.message
    bad_config = error(c.alter_topic, "dup", {"retention.ms": "soon"})
    assert bad_config.status == 400 and "retention.ms" in bad_config.message
    assert error(c.create_topic, "x", 0).status == 400
    assert error(c.alter_topic, "dup", partitions=1).status == 400
    # a bad partition count leaves the configs untouched
    assert error(c.alter_topic, "dup", {"retention.ms": "5"}, partitions=1).status == 400
    assert c.topic("dup").configs["retention.ms"] == "604800000"

    status, body, _ = raw(appliance, "POST", "/api/v1/topics", b"{not json")
    assert status == 400 and "JSON" in json.loads(body)["error"]
    status, body, _ = raw(appliance, "POST", "/api/v1/topics", json.dumps({"name": 5}).encode())
    assert status == 400 and "name" in json.loads(body)["error"]
    status, body, headers = raw(appliance, "PUT", "/api/v1/topics/dup", b"{}")
    assert status == 405 and "GET" in headers["allow"]
    status, body, _ = raw(appliance, "GET", "/api/v1/nothing-here")
    assert status == 404 and json.loads(body)["error"]
    status, body, _ = raw(appliance, "POST", "/api/v1/topics", b"x" * (MAX_BODY_BYTES + 1))
    assert status == 413 and json.loads(body)["error"]
    assert [t.name for t in c.topics()] == ["dup"]


def test_unreachable_appliance_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AdminUnavailable, match="cannot reach"):
        AdminClient(f"http://127.0.0.1:{port}", timeout=2).status()


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_prometheus_metrics_parse_and_match_the_json(appliance):
    c = AdminClient(appliance.admin_url)
    c.create_topic("m", 2)
    produce(appliance, "m", [b"x"] * 5, partition=0)

    fams = _families(c.metrics_text())
    # The parser drops the _total suffix from counter family names.
    assert fams["millstream_kafka_requests"].type == "counter"
    assert fams["millstream_kafka_requests"].samples[0].name == "millstream_kafka_requests_total"
    assert fams["millstream_kafka_requests"].samples[0].value > 0
    assert fams["millstream_up"].samples[0].value == 1
    hw = {(s.labels["topic"], s.labels["partition"]): s.value
          for s in fams["millstream_topic_partition_high_watermark"].samples}
    assert hw == {("m", "0"): 5, ("m", "1"): 0}
    assert fams["millstream_storage_wal_bytes"].samples[0].value > 0
    assert fams["millstream_storage_durable_appends"].samples[0].value >= 1

    as_json = {f.name: f for f in c.metrics()}
    json_hw = {(s.labels["topic"], s.labels["partition"]): s.value
               for s in as_json["millstream_topic_partition_high_watermark"].samples}
    assert json_hw == hw
    assert set(as_json) == {name if name in as_json else name + "_total" for name in fams}


def test_keep_alive_serves_many_requests_on_one_connection(appliance):
    conn = http.client.HTTPConnection("127.0.0.1", appliance.admin_port, timeout=10)
    conn.request("GET", "/api/v1/status")
    conn.getresponse().read()
    sock = conn.sock
    for path in ("/api/v1/topics", "/api/v1/storage", "/metrics", "/healthz"):
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    assert conn.sock is sock  # never reconnected
    conn.close()


def test_a_stalled_client_does_not_block_others(appliance):
    with socket.create_connection(("127.0.0.1", appliance.admin_port)) as slow:
        slow.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")  # and never finishes
        t0 = time.monotonic()
        with AdminClient(appliance.admin_url) as c:
            assert c.status().role == "plant"
        assert time.monotonic() - t0 < 2


def test_oversized_request_head_is_refused(appliance):
    with socket.create_connection(("127.0.0.1", appliance.admin_port), timeout=10) as s:
        s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 431")


def test_unix_socket_listener(make_appliance, tmp_path):
    sock_path = tmp_path / "run" / "admin.sock"
    config = tmp_path / "site.toml"
    config.write_text(f'[admin]\nunix_socket = "{sock_path}"\n')
    app = make_appliance(config=config).start()
    assert sock_path.is_socket()
    assert sock_path.stat().st_mode & 0o777 == 0o600
    with AdminClient(f"unix://{sock_path}") as c:
        st = c.status()
        c.create_topic("via-unix", 1)
    assert {listener.name: listener.address for listener in st.listeners}["admin-unix"] == str(sock_path)
    assert "via-unix" in kafka_topics(app)
    app.stop()
    assert not sock_path.exists()


def test_groups_show_members_and_lag_per_partition(appliance):
    c = AdminClient(appliance.admin_url)
    c.create_topic("lagging", 2)
    produce(appliance, "lagging", [b"x"] * 10, partition=0)
    produce(appliance, "lagging", [b"y"] * 5, partition=1)
    committer = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "mes-reader",
                          "enable.auto.commit": False})
    try:
        committer.commit(offsets=[TopicPartition("lagging", 0, 4), TopicPartition("lagging", 1, 5)],
                         asynchronous=False)
    finally:
        committer.close()

    g = c.group("mes-reader")
    assert {(p.topic, p.partition): (p.committed, p.high_watermark, p.lag) for p in g.partitions} == {
        ("lagging", 0): (4, 10, 6), ("lagging", 1): (5, 5, 0)}
    assert g.total_lag == 6 and g.members == []
    fams = _families(c.metrics_text())
    lag = {(s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
           for s in fams["millstream_consumer_group_lag"].samples}
    assert lag == {("mes-reader", "lagging", "0"): 6, ("mes-reader", "lagging", "1"): 0}

    member = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "live-reader",
                       "auto.offset.reset": "earliest", "client.id": "historian-1"})
    try:
        member.subscribe(["lagging"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            member.poll(0.2)
            groups = {g.group_id: g for g in c.groups()}
            if "live-reader" in groups and groups["live-reader"].state == "Stable":
                break
        live = c.group("live-reader")
        assert live.state == "Stable"
        assert [m.client_id for m in live.members] == ["historian-1"]
    finally:
        member.close()


def test_expect_100_continue_gets_an_interim_response(appliance):
    body = json.dumps({"name": "big-body", "configs": {"retention.ms": "1" + "0" * 4}, "pad": "x" * 2000}).encode()
    with socket.create_connection(("127.0.0.1", appliance.admin_port), timeout=10) as s:
        s.sendall(b"POST /api/v1/topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 100")
        s.sendall(body)
        assert s.recv(65536).startswith(b"HTTP/1.1 201")


def test_a_reset_connection_is_only_that_connections_problem(appliance):
    import struct

    for payload in (b"", b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /api/v1/topics HTTP/1.1\r\n"):
        s = socket.create_connection(("127.0.0.1", appliance.admin_port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(payload)
        s.close()  # linger 0: the server sees a TCP reset
    time.sleep(0.3)
    assert appliance.proc.poll() is None
    with AdminClient(appliance.admin_url) as c:
        assert c.status().role == "plant"


def test_unusable_unix_socket_path_fails_start_up_with_one_clear_line(make_appliance, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = tmp_path / "site.toml"
    config.write_text(f'[admin]\nunix_socket = "{blocker}/admin.sock"\n')
    app = make_appliance(config=config)
    with pytest.raises(RuntimeError, match="exited with 1"):
        app.start()
    assert f"admin API cannot listen on {blocker}/admin.sock" in app.log_text()
    assert "Traceback" not in app.log_text()
