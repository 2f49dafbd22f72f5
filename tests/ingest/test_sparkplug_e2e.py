"""A test edge node (paho-mqtt, 3.1.1, NDEATH as its will) against a real appliance process."""

from __future__ import annotations

import json

from appliance.ingest.sparkplug.payload import decode_payload, metric_value
from tests.harness import ApplianceProcess
from tests.ingest import spb
from tests.ingest.helpers import Client, read_topic, write_config

CONFIG = """
[sparkplug]
kafka_topic = "spb.{group}"
raw_topic = "spb.raw"

[[assets]]
match = "spBv1.0/line3/+/press-gw/#"
path = "acme/plant1/stamping/line3"
"""


def test_birth_data_death_and_rebirth_on_seq_gap(tmp_path):
    app = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, CONFIG)).start()
    try:
        host = Client(app.mqtt_port, "scada-host")
        host.subscribe("spBv1.0/line3/NCMD/#", 0)
        death = spb.payload([spb.metric("bdSeq", 0, "Int64")])
        edge = Client(app.mqtt_port, "press-gw", v5=False, will=("spBv1.0/line3/NDEATH/press-gw", death, 1, False))
        base = "spBv1.0/line3/{}/press-gw"
        edge.publish(base.format("NBIRTH"), spb.payload([
            spb.metric("bdSeq", 0, "Int64"), spb.metric("Temperature", 20.5, "Double", alias=1),
            spb.metric("Count", -5, "Int32", alias=2), spb.metric("Running", True, "Boolean", alias=3)], seq=0), 1)
        edge.publish(base.format("DBIRTH") + "/press-7", spb.payload([
            spb.metric("Pressure", 2.5, "Float", alias=10)], seq=1), 1)
        edge.publish(base.format("NDATA"), spb.payload([spb.metric(alias=1, value=21.0, ts=1_700_000_000_000)], seq=2), 1)
        edge.publish(base.format("DDATA") + "/press-7", spb.payload([spb.metric(alias=10, value=3.5, dtype="Float")],
                                                                     seq=3), 1)
        assert host.messages.empty()
        edge.publish(base.format("NDATA"), spb.payload([spb.metric(alias=2, value=-6, dtype="Int32")], seq=5), 1)  # gap
        cmd = host.receive()
        assert cmd.topic == "spBv1.0/line3/NCMD/press-gw"
        assert [(m.name, metric_value(m, m.datatype)) for m in decode_payload(cmd.payload).metrics] == [
            ("Node Control/Rebirth", True)]
        edge.c.loop_stop()
        edge.c.socket().close()  # the edge node drops off: its will (NDEATH) is published
        host.close()

        records = read_topic(app.bootstrap, "spb.line3", 4 + 1 + 1 + 1 + 1 + 4)
        docs = [json.loads(r.value()) for r in records]
        got = [(d["message_type"], d["device"], d["metric"], d["value"], d["quality"]) for d in docs]
        assert got == [
            ("NBIRTH", None, "bdSeq", 0, "GOOD"), ("NBIRTH", None, "Temperature", 20.5, "GOOD"),
            ("NBIRTH", None, "Count", -5, "GOOD"), ("NBIRTH", None, "Running", True, "GOOD"),
            ("DBIRTH", "press-7", "Pressure", 2.5, "GOOD"),
            ("NDATA", None, "Temperature", 21.0, "GOOD"),  # alias 1 resolved from the birth
            ("DDATA", "press-7", "Pressure", 3.5, "GOOD"),
            ("NDATA", None, "Count", -6, "GOOD"),
            ("NDEATH", None, "Temperature", None, "STALE"), ("NDEATH", None, "Count", None, "STALE"),
            ("NDEATH", None, "Running", None, "STALE"), ("DDEATH", "press-7", "Pressure", None, "STALE"),
        ]
        ndata = docs[5]
        assert ndata["timestamp"] == 1_700_000_000_000 and ndata["datatype"] == "Double" and ndata["alias"] == 1
        assert ndata["asset"]["path"] == "acme/plant1/stamping/line3" and ndata["seq"] == 2
        assert records[5].key() == b"line3/press-gw/Temperature"
        assert records[6].key() == b"line3/press-gw/press-7/Pressure"
        assert dict(records[5].headers())["isa95.line"] == b"line3"
        raw = read_topic(app.bootstrap, "spb.raw", 6)
        assert [dict(r.headers())["sparkplug.type"] for r in raw] == [b"NBIRTH", b"DBIRTH", b"NDATA", b"DDATA", b"NDATA",
                                                                       b"NDEATH"]
        assert [decode_payload(r.value()).seq for r in raw[:5]] == [0, 1, 2, 3, 5]  # byte for byte as sent
        assert raw[0].key() == b"line3/press-gw" and raw[1].key() == b"line3/press-gw/press-7"
    finally:
        app.kill()
