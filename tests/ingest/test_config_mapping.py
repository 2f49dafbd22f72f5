"""The mapping sections of the site config, and the pure mapping they drive."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_settings
from appliance.errors import ConfigError
from appliance.ingest.mapping import IngestRejectedError
from appliance.ingest.pipeline import Ingestor
from appliance.mqtt.sink import InboundMessage

EXAMPLE = Path(__file__).resolve().parents[2] / "site-configs" / "plant-mqtt-mapping.toml"


def _msg(topic: str, payload: bytes = b"x", **kw) -> InboundMessage:
    return InboundMessage(client_id=kw.pop("client_id", "dev"), topic=topic, payload=payload, qos=1, retain=False,
                          received_at_ms=1000, **kw)


def test_example_site_config_loads_and_maps():
    s = load_settings(EXAMPLE)
    assert len(s.mqtt_map) == 2 and len(s.assets) == 3 and s.mqtt_out[0].kafka_topic == "setpoints"
    ing = Ingestor(s)
    [rec] = ing.process(_msg("uns/acme/plant1/line3/press-7/temperature"), 0.0).records
    assert rec.topic == "plant1.line3.telemetry" and rec.key == b"press-7/temperature"
    h = dict(rec.headers)
    assert h["isa95.path"] == b"acme/plant1/stamping/line3/cell-1/press-7" and h["isa95.asset"] == b"press-7"
    [alarm] = ing.process(_msg("alarms/paint/booth 2/fire"), 0.0).records
    assert alarm.topic == "alarms" and alarm.key == b"paint"
    assert dict(alarm.headers)["isa95.path"] == b"acme/plant1/paint"
    [other] = ing.process(_msg("x/y"), 0.0).records
    assert other.topic == "mqtt.unmapped" and other.key == b"x/y"
    assert ing.stats()["mapped"] == 2 and ing.stats()["unmapped"] == 1


@pytest.mark.parametrize("text, where", [
    ('[[mqtt_map]]\nfilter = "a/#"\n', "mqtt_map[0].kafka_topic: required setting is missing"),
    ('[[mqtt_map]]\nfilter = "a/#"\nkafka_topic = "t"\n[[mqtt_map]]\nfilter = "a/#/b"\nkafka_topic = "t"\n',
     "mqtt_map[1].filter: '#' must be the last level"),
    ('[[mqtt_map]]\nfilter = "a"\nkafka_topic = "t.{x y}"\n', "mqtt_map[0].kafka_topic: placeholder"),
    ('[[mqtt_map]]\nfilter = "a"\nkafka_topic = "t"\nvalue = "xml"\n', "mqtt_map[0].value: expected one of"),
    ('[[assets]]\nmatch = "a/#"\nsite = "s"\nplanet = "earth"\n', "assets[0].planet: unknown setting"),
    ('[mqtt_map]\nfilter = "a"\n', "mqtt_map: expected an array of tables ([[mqtt_map]])"),
    ('[[mqtt_map]]\nfilter = "a/{site}/#"\nkafka_topic = "{sit}.t"\n',
     "mqtt_map[0]: kafka_topic: {sit} is not a level named in the filter"),
])
def test_array_section_problems_name_file_entry_and_key(tmp_path, text, where):
    cfg = tmp_path / "site.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert str(cfg) in str(e.value) and where in str(e.value)


def test_reject_mode_and_illegal_topic_characters(tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[ingest]\nunmapped = "reject"\n[[mqtt_map]]\nfilter = "d/+/+"\nkafka_topic = "dev.{1}"\nkey = "{2}"\n')
    ing = Ingestor(load_settings(cfg))
    [rec] = ing.process(_msg("d/Press #7 (old)/t"), 0.0).records
    assert rec.topic == "dev.Press__7__old_" and rec.key == b"t"
    with pytest.raises(IngestRejectedError) as e:
        ing.process(_msg("d/only-two"), 0.0)
    assert e.value.mqtt_reason == 0x90
    assert ing.process(_msg("d/a/b", client_id="$millstream/kafka"), 0.0).records == []  # own messages skipped
