"""Listener/security settings, the Security service (start-up, expiry warnings, CRL refresh) and
the MQTT access hook's limits, without sockets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from appliance.config import load_settings
from appliance.errors import ConfigError, StartupError
from appliance.security.access import NOT_AUTHORIZED, QOS_NOT_SUPPORTED, QUOTA_EXCEEDED, MqttAccess
from appliance.security.pki import Identity, Pki
from appliance.security.service import Security

RULES = """
[zones.cell]
[[conduits]]
name = "telemetry"
from = "cell"
to = "mqtt-cell"
allow = ["publish"]
topics = ["uns/{id}/#"]
max_qos = 1
rate = { msgs_per_s = 2, max_payload = 100 }
"""


def _settings(tmp_path, body: str):
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n' + body)
    return load_settings(cfg)


LISTENERS = """
[[listeners]]
name = "mqtt-cell"
protocol = "mqtt"
bind = "127.0.0.1:0"
security = "mtls"
[[listeners]]
name = "kafka-a"
protocol = "kafka"
bind = "127.0.0.1:0"
zone = "cell"
[[listeners]]
name = "kafka-b"
protocol = "kafka"
bind = "127.0.0.1:0"
security = "tls"
advertised_host = "plant1.example"
"""


def test_listeners_replace_the_single_address_of_their_protocol_only(tmp_path):
    s = _settings(tmp_path, LISTENERS)
    assert [x.name for x in s.listeners_of("kafka")] == ["kafka-a", "kafka-b"]
    assert [x.name for x in s.listeners_of("mqtt")] == ["mqtt-cell"]
    (admin,) = s.listeners_of("admin")  # none declared: [admin] listen, plaintext, as before
    assert (admin.name, str(admin.bind), admin.security) == ("admin", "127.0.0.1:9644", "plaintext")
    assert [x.name for x in s.tls_listeners] == ["mqtt-cell", "kafka-b"]
    assert s.pki_dir == tmp_path / "data" / "pki"
    plain = load_settings(None)
    assert [(x.name, str(x.bind)) for x in plain.listeners_of("kafka")] == [("kafka", "0.0.0.0:9092")]


@pytest.mark.parametrize("body, problem", [
    (LISTENERS + '[[listeners]]\nname = "kafka-a"\nprotocol = "kafka"\nbind = "127.0.0.1:1"\n', "already declared"),
    ('[[listeners]]\nname = "adm"\nprotocol = "admin"\nbind = "0.0.0.0:9644"\n', 'needs security = "mtls"'),
    ('[[listeners]]\nname = "m"\nprotocol = "mqtt"\nbind = "127.0.0.1:1"\nadvertised_host = "x"\n', "kafka listeners only"),
    ('[[listeners]]\nname = "k"\nprotocol = "kafka"\nbind = "127.0.0.1:1"\nsecurity = "ssl"\n', "plaintext, tls, mtls"),
    ('[[listeners]]\nname = "k k"\nprotocol = "kafka"\nbind = "127.0.0.1:1"\n', "expected 1-64"),
])
def test_bad_listeners_are_refused_with_the_key(tmp_path, body, problem):
    with pytest.raises(ConfigError, match="listeners") as e:
        _settings(tmp_path, body)
    assert problem in str(e.value)


def test_setup_issues_the_listener_certificate_and_refuses_a_bad_rules_file(tmp_path):
    (tmp_path / "rules.toml").write_text(RULES)
    s = _settings(tmp_path, f'[security]\nrules = "{tmp_path / "rules.toml"}"\nserver_names = ["plant1.example"]\n'
                  + LISTENERS)
    sec = Security(s)
    sec.setup()
    assert sec.enabled and sec.server_cert is not None
    assert {"plant1.example", "localhost"} <= set(sec.server_cert.record.dns)
    assert "127.0.0.1" in sec.server_cert.record.ips
    assert sec.context_source(s.listeners_of("mqtt")[0]) is not None
    assert sec.context_source(s.listeners_of("kafka")[0]) is None  # plaintext
    (tmp_path / "rules.toml").write_text(RULES.replace('"cell"', '"nowhere"', 1))
    with pytest.raises(StartupError, match=r"rules\.toml:\d+: .*unknown zone 'nowhere'"):
        Security(s).setup()


def test_expiry_warnings_and_crl_refresh(tmp_path):
    s = _settings(tmp_path, LISTENERS)
    sec = Security(s)
    sec.setup()
    assert not sec.enabled and sec.warnings == []
    pki = Pki(tmp_path / "data")
    now = datetime.now(timezone.utc)
    pki.issue("cell", "soon-1", not_after=now + timedelta(days=5))
    pki.refresh_crl(days=3)  # about to lapse: OpenSSL would refuse every client after it
    warnings = sec.check_expiry()
    assert any(w.startswith("certificate cell/soon-1 expires") for w in warnings)
    assert not any(w.startswith("crl") for w in warnings)  # re-signed: the CA key is not encrypted
    assert pki.crl().next_update_utc > now + timedelta(days=300)


class _Sec:
    """Security.check over real rules, without the service."""

    def __init__(self) -> None:
        from appliance.security.rules import Authorizer, parse_rules

        self.authz = Authorizer(parse_rules(RULES))

    def check(self, identity, zone, listener, op, resource):
        return self.authz.check(0.0, identity, zone, listener, op, resource)


def test_mqtt_access_applies_the_conduit_limits():
    acc = MqttAccess(_Sec(), Identity("cell", "press-7"), None, "mqtt-cell")
    assert acc.check_publish("uns/press-7/t", 1, 10, 0.0) == 0
    assert acc.check_publish("uns/press-9/t", 1, 10, 0.0) == NOT_AUTHORIZED
    assert acc.check_publish("uns/press-7/t", 2, 10, 0.0) == QOS_NOT_SUPPORTED
    assert acc.check_publish("uns/press-7/t", 0, 101, 0.0) == QUOTA_EXCEEDED  # max_payload 100
    assert acc.check_publish("uns/press-7/t", 0, 10, 0.0) == 0  # second message of the second
    assert acc.check_publish("uns/press-7/t", 0, 10, 0.1) == QUOTA_EXCEEDED  # 2 msgs/s spent
    assert acc.check_publish("uns/press-7/t", 0, 10, 0.7) == 0  # refilled
    assert acc.check_subscribe("uns/press-7/#", 2, 0.0) == NOT_AUTHORIZED  # the conduit only publishes
