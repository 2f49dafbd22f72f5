"""`[[streams]]` and `[inventory]` in the site config: parsed values and "file, key, problem" errors."""

from pathlib import Path

import pytest

from appliance.config import StreamSettings, describe_arrays, load_settings
from appliance.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "site.toml"
    cfg.write_text(text)
    return cfg


def test_streams_parse_with_every_field(tmp_path: Path):
    cfg = write(tmp_path, """
[inventory]
worst_wan_outage = "12h"
plant_disk_budget = "50GiB"

[[streams]]
topic = "uns.acme.plant1.line3.*"
source = "line 3 PLCs"
asset = "acme/plant1/line3"
ordering = "none"
local_action = true
retention = "3d"
retention_bytes = "10GiB"
replay = "1d"
consumers = ["historian", "mes"]
owner = "line3-controls"
placement = "machine"
forwarded = true

[[streams]]
topic = "mes.workorders"
""")
    s = load_settings(cfg)
    assert s.inventory.worst_wan_outage == 12 * 3600
    assert s.inventory.plant_disk_budget == 50 << 30
    first, second = s.streams
    assert first == StreamSettings(topic="uns.acme.plant1.line3.*", source="line 3 PLCs", asset="acme/plant1/line3",
                                   ordering="none", local_action=True, retention=3 * 86400.0,
                                   retention_bytes=10 << 30, replay=86400.0, consumers=("historian", "mes"),
                                   owner="line3-controls", placement="machine", forwarded=True)
    # Defaults of an entry that gives only its topic.
    assert (second.ordering, second.placement, second.forwarded, second.owner, second.retention) == \
        ("per_key", "plant_edge", False, None, None)
    plain = describe_arrays(s)["streams"]
    assert plain[0]["consumers"] == ["historian", "mes"] and plain[1]["topic"] == "mes.workorders"


def test_no_streams_is_an_empty_inventory():
    s = load_settings()
    assert s.streams == () and s.inventory.worst_wan_outage == 86400


@pytest.mark.parametrize("entry, key, problem", [
    ('topic = "a"\nplacement = "moon"', "streams[1].placement", "expected one of machine, plant_edge, regional, cloud, lake"),
    ('topic = "a"\nordering = "total"', "streams[1].ordering", "expected one of per_key, none"),
    ('topic = "a"\nlocal_action = "yes"', "streams[1].local_action", "expected true or false"),
    ('topic = "a"\nretention = "3 weeks"', "streams[1].retention", "expected a duration"),
    ('topic = "a"\nconsumers = "mes"\nowner = 7', "streams[1].owner", "expected a string"),
    ('topic = "a"\nconsumers = [1]', "streams[1].consumers", "expected a list of non-empty strings"),
    ('topic = "a"\nowner_team = "x"', "streams[1].owner_team", "unknown setting"),
    ('source = "PLC"', "streams[1].topic", "required setting is missing"),
    ('topic = "bad topic!"', "streams[1].topic", "expected a topic name or pattern"),
    ('topic = "ok.topic"', "streams[1].topic", "'ok.topic' is already declared by streams[0]"),
])
def test_stream_errors_name_file_index_key_and_problem(tmp_path: Path, entry: str, key: str, problem: str):
    cfg = write(tmp_path, f'[[streams]]\ntopic = "ok.topic"\n\n[[streams]]\n{entry}\n')
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert str(e.value).startswith(f"{cfg}: {key}: ")
    assert problem in str(e.value)


def test_streams_as_a_plain_table_is_refused(tmp_path: Path):
    cfg = write(tmp_path, '[streams]\ntopic = "a"\n')
    with pytest.raises(ConfigError, match=r"streams: expected an array of tables \(\[\[streams\]\]\)"):
        load_settings(cfg)


def test_inventory_setting_errors(tmp_path: Path):
    cfg = write(tmp_path, '[inventory]\nworst_wan_outage = "forever"\n')
    with pytest.raises(ConfigError, match=r"inventory\.worst_wan_outage: expected a duration"):
        load_settings(cfg)


def test_unknown_section_lists_array_sections(tmp_path: Path):
    cfg = write(tmp_path, '[[stream]]\ntopic = "a"\n')
    with pytest.raises(ConfigError, match=r"unknown section \(known: .*\[\[streams\]\]"):
        load_settings(cfg)


def test_example_plant_inventory_loads():
    s = load_settings(REPO / "site-configs" / "plant-single-line.toml")
    assert len(s.streams) >= 5
    assert {st.placement for st in s.streams} >= {"machine", "plant_edge", "lake"}
    assert all(st.owner for st in s.streams)
