"""Bridge QoS 2 is exactly-once when the link to the upstream Mosquitto drops mid-handshake.

A cuttable proxy sits between the bridge and a real Mosquitto. It swallows the bridge's PUBREC
(so Mosquitto resends the PUBLISH with DUP=1 on the next connection) or Mosquitto's PUBREL, and
cuts the link; one variant also kill -9s the appliance while the link is down.
"""

from __future__ import annotations

import time

import pytest

from tests.harness import ApplianceProcess
from tests.ingest.helpers import Client, read_topic, wait_for_log, write_config
from tests.ingest.mqtt_proxy import PUBLISH, PUBREC, PUBREL, MqttCutProxy

DUP = 0x08


def _config(port: int) -> str:
    return f"""
[bridge]
upstream = "127.0.0.1:{port}"
client_id = "plant1-bridge"
filters = ["factory/#"]
qos = 2
session_expiry = 3600
backoff_min = "100ms"
backoff_max = "500ms"

[[mqtt_map]]
filter = "factory/#"
kafka_topic = "bridged"
"""


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("fault", ["pubrec-lost", "pubrel-lost", "pubrec-lost-then-kill-9"])
def test_qos2_message_is_ingested_once_across_a_dropped_handshake(tmp_path, mosquitto, fault):
    proxy = MqttCutProxy(mosquitto.port).start()
    app = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, _config(proxy.port))).start()
    dev = None
    try:
        wait_for_log(app, "bridge_subscribed")
        if fault == "pubrel-lost":
            proxy.cut_on(to_server=False, packet_type=PUBREL)
        else:
            proxy.cut_on(to_server=True, packet_type=PUBREC)
        if fault.endswith("kill-9"):
            proxy.refuse = True  # the bridge cannot reconnect before the kill
        dev = Client(mosquitto.port, "upstream-device")
        mid = dev.publish("factory/line1/batch", b"batch-42", 2, wait=False)
        dev.wait_ack(mid)  # Mosquitto has the message (PUBCOMP to the device)
        _wait(lambda: proxy.cuts == 1, "the proxy cutting the link")
        if fault.endswith("kill-9"):
            time.sleep(0.3)  # the bridge is reconnecting into a refusing proxy
            app.kill()
            proxy.refuse = False
            app.start()
        wait_for_log(app, "session_present=True")
        # the handshake completes on the new link: Mosquitto resent the PUBLISH (DUP) or the PUBREL
        if fault == "pubrel-lost":
            _wait(lambda: proxy.count("s2c", PUBREL) >= 1, "PUBREL resent")
        else:
            _wait(lambda: proxy.count("s2c", PUBLISH, DUP) >= 1, "PUBLISH resent with DUP")
            _wait(lambda: proxy.count("c2s", PUBREC) >= 1 and proxy.count("s2c", PUBREL) >= 1, "PUBREC/PUBREL")
        msgs = read_topic(app.bootstrap, "bridged", 1, settle=1.5)
        assert [m.value() for m in msgs] == [b"batch-42"]
        # and the bridge keeps working: a later QoS 2 message arrives once too
        assert dev.publish("factory/line1/batch", b"batch-43", 2) == 0
        msgs = read_topic(app.bootstrap, "bridged", 2, settle=1.0)
        assert [m.value() for m in msgs] == [b"batch-42", b"batch-43"]
    finally:
        if dev is not None:
            dev.close()
        app.kill()
        proxy.close()
