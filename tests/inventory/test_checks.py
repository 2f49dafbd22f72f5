"""Every placement rule: what an operator reads in `config check`, the logs and (later) the admin API."""

from pathlib import Path

import pytest

from appliance.config import InventorySettings, StreamSettings, load_settings
from appliance.inventory.checks import Finding, check_inventory, check_settings, stream_for_topic
from appliance.inventory.measurements import TopicMeasurement, load_measurements
from appliance.inventory.report import format_findings, log_findings

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0
INV = InventorySettings(worst_wan_outage=DAY, plant_disk_budget=0)


def stream(topic: str = "t", **kw) -> StreamSettings:
    kw.setdefault("owner", "ops")
    return StreamSettings(topic=topic, **kw)


def rules(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def test_clean_plant_stream_has_no_findings():
    assert check_inventory([stream(placement="plant_edge", local_action=True)], INV) == []


def test_stream_without_owner_is_flagged():
    (f,) = check_inventory([StreamSettings(topic="t")], INV)
    assert (f.severity, f.stream, f.rule) == ("warning", "t", "no-owner")


@pytest.mark.parametrize("placement, severity", [("cloud", "error"), ("lake", "error"), ("regional", "warning")])
def test_local_action_must_not_depend_on_the_uplink(placement: str, severity: str):
    findings = check_inventory([stream(placement=placement, local_action=True, forwarded=True, retention=2 * DAY)], INV)
    (f,) = rules(findings, "local-action-over-wan")
    assert f.severity == severity
    if severity == "error":
        assert f"placement = {placement} puts it behind the uplink" in f.message


@pytest.mark.parametrize("placement", ["machine", "plant_edge"])
def test_local_action_at_the_plant_is_fine(placement: str):
    assert not rules(check_inventory([stream(placement=placement, local_action=True)], INV), "local-action-over-wan")


def test_offsite_placement_without_forwarding_is_flagged():
    (f,) = check_inventory([stream(placement="cloud")], INV)
    assert (f.severity, f.rule) == ("warning", "placement-not-forwarded")


def test_forwarded_retention_shorter_than_the_worst_outage_is_an_error():
    findings = check_inventory([stream(forwarded=True, retention=12 * 3600)], INV)
    (f,) = rules(findings, "outage-retention")
    assert f.severity == "error"
    assert f.message.startswith("plant retention 12h is shorter than the worst WAN outage (1d)")


def test_forwarded_without_retention_is_a_warning():
    (f,) = rules(check_inventory([stream(forwarded=True)], INV), "outage-retention")
    assert f.severity == "warning" and "no plant retention declared" in f.message


def test_rate_checks_say_not_measured_yet_without_measurements():
    findings = check_inventory([stream(forwarded=True, retention=2 * DAY, retention_bytes=1 << 30)], INV)
    (f,) = rules(findings, "outage-rate")
    assert f.severity == "info"
    assert f.message == "not measured yet: cannot check that retention_bytes 1.0 GiB holds a 1d outage"


def test_retention_bytes_too_small_for_the_outage_at_the_measured_rate():
    s = stream("line3.*", forwarded=True, retention=2 * DAY, retention_bytes=1 << 30)
    # Two topics under the pattern: 20 KiB/s together -> 1d needs ~1.6 GiB > 1 GiB.
    m = [TopicMeasurement("line3.a", bytes_in_per_s=10 * 1024), TopicMeasurement("line3.b", bytes_in_per_s=10 * 1024)]
    (f,) = rules(check_inventory([s], INV, m), "outage-rate")
    assert f.severity == "error"
    assert f.message == ("at the measured 20.0 KiB/s a 1d outage needs 1.6 GiB, "
                         "but retention_bytes is 1.0 GiB (covers 14.6h)")


def test_retention_bytes_large_enough_reports_what_the_outage_needs():
    s = stream(forwarded=True, retention=2 * DAY, retention_bytes=10 << 30)
    (f,) = rules(check_inventory([s], INV, [TopicMeasurement("t", bytes_in_per_s=10 * 1024)]), "outage-rate")
    assert f.severity == "info" and "needs 843.8 MiB of plant disk" in f.message


def test_plant_disk_budget_over_all_forwarded_streams():
    inv = InventorySettings(worst_wan_outage=DAY, plant_disk_budget=1 << 30)
    streams = [stream("a", forwarded=True, retention=2 * DAY), stream("b", forwarded=True, retention=2 * DAY)]
    m = [TopicMeasurement("a", bytes_in_per_s=8 * 1024), TopicMeasurement("b", bytes_in_per_s=8 * 1024)]
    (f,) = rules(check_inventory(streams, inv, m), "outage-disk-budget")
    assert (f.severity, f.stream) == ("error", "*")
    assert "need 1.3 GiB to ride out a 1d outage, plant_disk_budget is 1.0 GiB" in f.message
    (f,) = rules(check_inventory(streams, inv), "outage-disk-budget")
    assert f.severity == "info" and f.message.startswith("not measured yet")
    assert not rules(check_inventory(streams, inv, m[:1] + [TopicMeasurement("b", bytes_in_per_s=1)]),
                     "outage-disk-budget")


def test_replay_beyond_retention():
    (f,) = check_inventory([stream(retention=DAY, replay=7 * DAY)], INV)
    assert (f.severity, f.rule, f.message) == ("warning", "replay-beyond-retention",
                                               "consumers expect to replay 7d but the plant keeps 1d")


def test_undeclared_topics_with_traffic_are_unowned():
    m = [TopicMeasurement("declared", bytes_in_per_s=100),
         TopicMeasurement("rogue", bytes_in_per_s=2048, consumer_groups=2),
         TopicMeasurement("idle", bytes_in_per_s=0),
         TopicMeasurement("__consumer_offsets", bytes_in_per_s=50)]
    findings = check_inventory([stream("declared")], INV, m)
    (f,) = rules(findings, "unowned")
    assert (f.severity, f.stream) == ("warning", "rogue")
    assert f.message.startswith("carries 2.0 KiB/s in, 4.0 KiB/s out but no [[streams]] entry declares it")


def test_declared_stream_without_traffic_is_noted_only_when_measured():
    assert rules(check_inventory([stream("quiet")], INV, []), "declared-no-traffic")
    assert not rules(check_inventory([stream("quiet")], INV), "declared-no-traffic")


def test_exact_topic_beats_a_pattern_and_first_pattern_wins():
    streams = [stream("line3.*"), stream("line3.alarms"), stream("line3.a*")]
    assert stream_for_topic(streams, "line3.alarms").topic == "line3.alarms"
    assert stream_for_topic(streams, "line3.anything").topic == "line3.*"
    assert stream_for_topic(streams, "line4.x") is None


def test_errors_come_first_and_findings_are_plain_data():
    streams = [StreamSettings(topic="a"), stream("b", placement="lake", local_action=True, forwarded=True, retention=DAY)]
    findings = check_inventory(streams, INV)
    assert findings[0].severity == "error"
    assert [f.severity for f in findings] == sorted((f.severity for f in findings), key=["error", "warning", "info"].index)
    assert findings[0].as_dict() == {"severity": "error", "stream": "b", "rule": "local-action-over-wan",
                                     "message": findings[0].message}
    lines = format_findings(findings)
    assert lines[0].startswith("inventory: 1 error(s), 1 warning(s)")


def test_example_site_config_with_example_measurements():
    settings = load_settings(REPO / "site-configs" / "plant-single-line.toml")
    assert not [f for f in check_settings(settings) if f.severity != "info"]
    findings = check_settings(settings, load_measurements(REPO / "site-configs" / "plant-measurements.json"))
    assert [f.stream for f in findings if f.rule == "unowned"] == ["uns.acme.plant1.lab.scratch"]
    assert not [f for f in findings if f.severity == "error"]


def test_findings_are_logged_one_line_each(caplog):
    import logging

    with caplog.at_level(logging.INFO):
        log_findings(check_inventory([StreamSettings(topic="a")], INV))
    from appliance.logs import KeyValueFormatter

    lines = [KeyValueFormatter().format(r) for r in caplog.records]
    assert len(lines) == 2
    assert "level=warning area=inventory event=inventory_finding severity=warning stream=a rule=no-owner" in lines[0]
    assert lines[1].endswith("event=inventory_checked error=0 warning=1 info=0")
