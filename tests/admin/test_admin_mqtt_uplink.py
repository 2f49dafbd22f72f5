"""MQTT and uplink figures through the admin API and /metrics, against real processes."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _post(url: str):
    req = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_mqtt_counts_show_in_api_and_metrics(appliance):
    for i in range(3):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(appliance.mqtt_port), "-t", f"line1/m{i}",
                        "-m", "42", "-q", "1"], check=True, timeout=15)
    status, body = _get(appliance.admin_url + "/api/v1/mqtt")
    view = json.loads(body)
    assert status == 200 and view["enabled"] and view["stats"]["messages_in"] == 3
    _, text = _get(appliance.admin_url + "/metrics")
    samples = {s.name: s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples}
    assert samples["millstream_mqtt_messages_in_total"] == 3
    assert samples["millstream_mqtt_connections_total"] == 3
    # Unmapped messages went to the default topic: the ingestion counters say so.
    assert view["ingest"]["records"] == 3
    assert samples["millstream_ingest_records_total"] == 3


def test_uplink_disabled_is_reported_not_hidden(appliance):
    status, body = _get(appliance.admin_url + "/api/v1/uplink")
    assert status == 200 and json.loads(body) == {"enabled": False}
    code, err = _post(appliance.admin_url + "/api/v1/uplink/pause")
    assert code == 409 and "uplink" in err["error"]
