"""The uplink over mTLS to a segmented cloud appliance: certificates from the cloud's own PKI
(`millstream pki issue --zone uplink --id SITE`), real TLS handshakes, the cloud's rules.

The cloud (one process for the module) has an mTLS listener in zone `uplink` whose conduit lets a
plant produce (and create) only topics named "<its certificate id>.*", and a plaintext listener
where the tests read with confluent-kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio

from appliance.config import load_settings
from appliance.security.pki import Pki
from appliance.uplink.client.errors import TlsError
from appliance.uplink.client.tls import UplinkTls, tls_failure
from tests.e2e.checks import assert_all_consumed_in_order
from tests.e2e.test_confluent_kafka import create_topic
from tests.harness import REPO
from tests.security.segmented import Segmented, pki_issue
from tests.uplink.helpers import plant_config, produce, read_topic, wait_for_count, watermarks

CLOUD_RULES = """
[zones.uplink]
[zones.it]
[zones.ops]

[[conduits]]
name = "uplink-receive"
from = "uplink"
to = "kafka-uplink"
allow = ["produce", "create_topic"]
topics = { prefix = "{id}." }

[[conduits]]
name = "it-read"
from = "it"
to = "kafka-it"
allow = ["consume"]
topics = "*"
groups = "*"

[[conduits]]
name = "ops-admin"
from = "ops"
to = "admin"
allow = ["admin"]
"""

CLOUD_CONFIG = """
[security]
rules = "{rules}"

[[listeners]]
name = "kafka-uplink"
protocol = "kafka"
bind = "127.0.0.1:0"
security = "mtls"
zone = "uplink"

[[listeners]]
name = "kafka-it"
protocol = "kafka"
bind = "127.0.0.1:0"
zone = "it"

[[listeners]]
name = "admin"
protocol = "admin"
bind = "127.0.0.1:0"
zone = "ops"

[storage]
fsync = false
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    node = Segmented(tmp_path_factory.mktemp("cloud") / "data", config=CLOUD_CONFIG, rules=CLOUD_RULES)
    node.role = "cloud"
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _it(cloud) -> str:
    return f"127.0.0.1:{cloud.ports['kafka-it']}"


def _uplink_addr(cloud) -> str:
    return f"127.0.0.1:{cloud.ports['kafka-uplink']}"


def _mtls(cert, ca_path: Path | None = None) -> dict:
    return {"security": "mtls", "ca_file": str(ca_path or cert.ca_path), "cert_file": str(cert.cert_path),
            "key_file": str(cert.key_path)}


def _plant(make_appliance, tmp_path, name: str, cloud, site: str, forward, **uplink):
    cfg = plant_config(tmp_path / f"{name}.toml", _uplink_addr(cloud), forward, site=site, **uplink)
    with open(cfg, "a") as fh:
        fh.write("[storage]\nfsync = false\n")
    return make_appliance(name, config=cfg).start()


def _uplink(plant) -> dict:
    with urllib.request.urlopen(f"{plant.admin_url}/api/v1/uplink", timeout=10) as r:
        return json.loads(r.read())


def _wait(pred, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_plant_forwards_over_mtls_exactly_once(cloud, make_appliance, tmp_path):
    cert = pki_issue(cloud.data_dir, "uplink", "plant1")  # as an operator would, on the cloud
    plant = _plant(make_appliance, tmp_path, "plant1", cloud, "plant1",
                   [{"topic": "alarms", "priority": 0}, {"prefix": "line1.", "priority": 5}], **_mtls(cert))
    create_topic(plant.bootstrap, "alarms", 1)
    create_topic(plant.bootstrap, "line1.telemetry", 2)
    alarms = produce(plant.bootstrap, "alarms", 200)
    telemetry = produce(plant.bootstrap, "line1.telemetry", 1500, partitions=2)
    for topic, parts, sent in (("plant1.alarms", 1, alarms), ("plant1.line1.telemetry", 2, telemetry)):
        n = wait_for_count(_it(cloud), topic, parts, len(sent))
        assert n == len(sent), f"{topic}: cloud holds {n}, plant acknowledged {len(sent)}"
        assert_all_consumed_in_order(sent, read_topic(_it(cloud), topic, len(sent)))
    st = _uplink(plant)
    assert st["connected"] and st["security"] == "mtls" and st["tls_error"] is None
    assert st["client_certificate"]["identity"] == "uplink/plant1" and not st["client_certificate"]["expired"]
    assert st["backlog_records"] == 0
    denied = [d for d in cloud.get("/api/v1/security")["denials"]["recent"] if d["identity"] == "uplink/plant1"]
    assert denied == []


def test_refused_certificates_keep_the_backlog_then_a_valid_one_forwards_it(cloud, make_appliance, tmp_path):
    pki = Pki(cloud.data_dir)
    revoked = pki_issue(cloud.data_dir, "uplink", "plant2")
    pki.revoke(revoked.record.serial, reason="key_compromise")
    foreign_ca = Pki(tmp_path / "foreign")
    foreign_ca.init(site="elsewhere")
    foreign = foreign_ca.issue("uplink", "plant3")
    forward = [{"topic": "alarms"}]
    p2 = _plant(make_appliance, tmp_path, "plant2", cloud, "plant2", forward, **_mtls(revoked))
    # plant3 trusts the right cloud CA but presents a certificate of another CA
    p3 = _plant(make_appliance, tmp_path, "plant3", cloud, "plant3", forward, **_mtls(foreign, pki.ca_cert_path))
    sent = {}
    for plant in (p2, p3):
        create_topic(plant.bootstrap, "alarms", 1)
        sent[plant] = produce(plant.bootstrap, "alarms", 150)
    for plant, reason, said in ((p2, "peer_refused:certificate_revoked", "refused our client certificate: it is revoked"),
                                (p3, "peer_refused:unknown_ca", "does not trust the CA that issued our client certificate")):
        st = _wait(lambda p=plant, said=said: (s := _uplink(p))["connect_failures"] >= 3 and s["backlog_records"]
                   and said in (s["last_error"] or "") and s, f"repeated refusals: {said}")
        assert st["tls_error"] == reason, st
        assert not st["connected"]
        assert said in st["last_error"], st["last_error"]
        assert st["backlog_records"] == 150 and st["sent_records"] == 0, json.dumps(st)
        assert plant.proc.poll() is None  # refused, retrying: no crash
    refusals = {(r["listener"], r["reason"]): r["count"] for r in cloud.get("/api/v1/security")["handshake_refusals"]}
    assert refusals.get(("kafka-uplink", "revoked"), 0) >= 1 and refusals.get(("kafka-uplink", "unknown_ca"), 0) >= 1
    assert watermarks(_it(cloud), "plant2.alarms", 1) == [0]
    # The operator issues a new certificate for plant2: the kept backlog arrives, exactly once.
    fresh = pki_issue(cloud.data_dir, "uplink", "plant2")
    p2.stop()
    plant_config(tmp_path / "plant2.toml", _uplink_addr(cloud), forward, site="plant2", **_mtls(fresh))
    p2.start()
    more = produce(p2.bootstrap, "alarms", 50, prefix="after")
    expected = sent[p2] + more
    assert wait_for_count(_it(cloud), "plant2.alarms", 1, len(expected)) == len(expected)
    assert_all_consumed_in_order(expected, read_topic(_it(cloud), "plant2.alarms", len(expected)))
    assert _uplink(p2)["tls_error"] is None


async def test_the_uplink_verifies_the_clouds_certificate(cloud, tmp_path):
    cert = pki_issue(cloud.data_dir, "uplink", "plant9")
    foreign = Pki(tmp_path / "foreign")
    foreign.init(site="elsewhere")
    host, port = "127.0.0.1", cloud.ports["kafka-uplink"]

    def settings(**kw):
        cfg = tmp_path / "u.toml"
        lines = ["[uplink]"] + [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {str(v).lower()}" for k, v in kw.items()]
        cfg.write_text("\n".join(lines) + "\n")
        return load_settings(cfg).uplink

    ok = UplinkTls(settings(**_mtls(cert)))
    stream = await ok.connect(host, port)  # the auto-issued listener certificate names 127.0.0.1
    await stream.aclose()
    with pytest.raises(TlsError) as e:
        await UplinkTls(settings(**_mtls(cert, foreign.ca_cert_path))).connect(host, port)
    assert e.value.reason == "unknown_ca" and "uplink.ca_file" in str(e.value)
    with pytest.raises(TlsError) as e:
        await UplinkTls(settings(**_mtls(cert), server_name="cloud.elsewhere.example")).connect(host, port)
    assert e.value.reason == "hostname_mismatch"
    # our certificate expired: the cloud says so (TLS 1.3: on the first read after our handshake)
    now = datetime.now(timezone.utc)
    old = Pki(cloud.data_dir).issue("uplink", "plant8", not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    expired = UplinkTls(settings(**_mtls(old)))
    assert expired.cert_info.expired and expired.cert_info.identity == "uplink/plant8"
    stream = await expired.connect(host, port)
    with pytest.raises(trio.BrokenResourceError) as e:
        await stream.send_all(b"\x00\x00\x00\x00")
        await stream.receive_some(10)
    assert tls_failure(e.value).reason == "peer_refused:certificate_expired"
    # server-only TLS (as for a third-party cluster) reaches the handshake; this cloud then wants a certificate
    tls_only = UplinkTls(settings(security="tls", ca_file=str(cert.ca_path)))
    assert tls_only.cert_info is None
    stream = await tls_only.connect(host, port)
    with pytest.raises(trio.BrokenResourceError) as e:
        await stream.send_all(b"\x00\x00\x00\x00")
        await stream.receive_some(10)
    assert tls_failure(e.value).reason == "peer_refused:certificate_required"


def test_a_topic_the_rules_deny_is_reported_on_both_sides_without_loss(cloud, make_appliance, tmp_path):
    cert = pki_issue(cloud.data_dir, "uplink", "plant4")
    forward = [{"topic": "alarms"}, {"topic": "recipes", "cloud": "shared.{topic}"}]  # not "plant4.*": denied
    plant = _plant(make_appliance, tmp_path, "plant4", cloud, "plant4", forward, **_mtls(cert))
    create_topic(plant.bootstrap, "alarms", 1)
    create_topic(plant.bootstrap, "recipes", 1)
    alarms = produce(plant.bootstrap, "alarms", 100)
    produce(plant.bootstrap, "recipes", 40)
    assert wait_for_count(_it(cloud), "plant4.alarms", 1, len(alarms)) == len(alarms)
    st = _wait(lambda: (s := _uplink(plant))["topics"]["recipes"]["errors"] and s, "the denial on the plant")
    assert "TOPIC_AUTHORIZATION_FAILED" in st["topics"]["recipes"]["errors"]["0"], st["topics"]["recipes"]
    assert st["topics"]["recipes"]["backlog_records"] == 40  # kept, not dropped
    assert st["connected"] and st["tls_error"] is None
    denials = [d for d in cloud.get("/api/v1/security")["denials"]["recent"] if d["identity"] == "uplink/plant4"]
    assert denials and all(d["resource"] == "shared.recipes" and d["listener"] == "kafka-uplink" for d in denials)
    # No retry storm: the denied topic is asked about again with a growing back-off, the session stays up.
    sessions, count = st["connect_failures"], len(denials)
    time.sleep(3.0)
    later = [d for d in cloud.get("/api/v1/security")["denials"]["recent"] if d["identity"] == "uplink/plant4"]
    assert len(later) - count <= 3, f"{len(later) - count} more denials in 3 s"
    st = _uplink(plant)
    assert st["connected"] and st["connect_failures"] == sessions == 0 and plant.proc.poll() is None
    assert st["topics"]["recipes"]["backlog_records"] == 40 and st["topics"]["alarms"]["backlog_records"] == 0


def _run(config: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(config), "--data-dir",
                           str(tmp_path / "d"), "--kafka-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                           "--mqtt-listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_bad_tls_settings_are_refused_at_start_up_naming_key_and_file(tmp_path, cloud):
    cert = pki_issue(cloud.data_dir, "uplink", "plant5")
    missing = tmp_path / "nope.crt"
    cfg = plant_config(tmp_path / "a.toml", "127.0.0.1:9", [{"topic": "x"}], site="plant5",
                       **{**_mtls(cert), "cert_file": str(missing)})
    res = _run(cfg, tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"uplink.cert_file: cannot read {missing}" in res.stderr and str(cfg) in res.stderr
    wrong_key = Pki(tmp_path / "other")
    wrong_key.init(site="x")
    other = wrong_key.issue("uplink", "plant5")
    cfg = plant_config(tmp_path / "b.toml", "127.0.0.1:9", [{"topic": "x"}], site="plant5",
                       **{**_mtls(cert), "key_file": str(other.key_path)})
    res = _run(cfg, tmp_path)
    assert res.returncode == 2 and "uplink.key_file" in res.stderr and "does not belong" in res.stderr, res.stderr[-2000:]
    cfg = plant_config(tmp_path / "c.toml", "127.0.0.1:9", [{"topic": "x"}], site="plant5",
                       security="mtls", ca_file=str(cert.ca_path), key_file=str(cert.key_path))
    res = _run(cfg, tmp_path)
    assert res.returncode == 2 and "needs cert_file" in res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize("keys, problem", [
    ({"ca_file": "/x/ca.crt"}, 'ca_file set but security = "plaintext"'),
    ({"security": "tls", "cert_file": "/x/c.crt", "key_file": "/x/c.key"}, 'needs security = "mtls"'),
    ({"security": "mtls", "cert_file": "/x/c.crt"}, 'security = "mtls" needs key_file'),
])
def test_inconsistent_tls_keys_are_config_errors(tmp_path, keys, problem):
    from appliance.errors import ConfigError

    cfg = plant_config(tmp_path / "p.toml", "127.0.0.1:9", [{"topic": "x"}], **keys)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert problem in str(e.value) and str(cfg) in str(e.value) and "uplink" in str(e.value)
