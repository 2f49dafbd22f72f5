"""A plant and a cloud appliance on loopback: what is produced to the plant arrives in the cloud
exactly once and in per-partition order, across cloud outages and a plant kill -9."""

from __future__ import annotations

import time

from tests.e2e.checks import assert_all_consumed_in_order
from tests.e2e.test_confluent_kafka import create_topic
from tests.uplink.helpers import produce, read_topic, start_pair, wait_for_count, watermarks

FORWARD = [{"topic": "alarms", "priority": 0}, {"prefix": "line1.", "priority": 5}]


def _assert_exactly_once(cloud, topic: str, partitions: int, produced) -> None:
    n = wait_for_count(cloud.bootstrap, topic, partitions, len(produced))
    assert n == len(produced), f"{topic}: cloud holds {n} records, plant acknowledged {len(produced)}"
    assert_all_consumed_in_order(produced, read_topic(cloud.bootstrap, topic, len(produced)))


def test_plant_topics_arrive_in_the_cloud_exactly_once_in_order(make_appliance, tmp_path):
    plant, cloud = start_pair(make_appliance, tmp_path, FORWARD)
    create_topic(plant.bootstrap, "alarms", 1)
    create_topic(plant.bootstrap, "line1.telemetry", 3)
    create_topic(plant.bootstrap, "other", 1)  # not forwarded
    alarms = produce(plant.bootstrap, "alarms", 300)
    telemetry = produce(plant.bootstrap, "line1.telemetry", 3000, partitions=3)
    produce(plant.bootstrap, "other", 10)
    _assert_exactly_once(cloud, "plant1.alarms", 1, alarms)
    _assert_exactly_once(cloud, "plant1.line1.telemetry", 3, telemetry)
    assert watermarks(cloud.bootstrap, "plant1.other", 1) == [0]
    # The cloud topic got the local partition count.
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": cloud.bootstrap}).list_topics(timeout=5)
    assert len(md.topics["plant1.line1.telemetry"].partitions) == 3
    assert "plant1.other" not in md.topics


def test_cloud_outage_then_everything_arrives_exactly_once(make_appliance, tmp_path):
    plant, cloud = start_pair(make_appliance, tmp_path, FORWARD)
    create_topic(plant.bootstrap, "line1.telemetry", 2)
    first = produce(plant.bootstrap, "line1.telemetry", 1000, prefix="a", partitions=2)
    assert wait_for_count(cloud.bootstrap, "plant1.line1.telemetry", 2, len(first)) == len(first)
    cloud.stop()  # the WAN is gone; the plant keeps accepting
    during = produce(plant.bootstrap, "line1.telemetry", 2000, prefix="b", partitions=2)
    time.sleep(1.0)  # the uplink notices and backs off
    cloud.start()
    after = produce(plant.bootstrap, "line1.telemetry", 500, prefix="c", partitions=2)
    _assert_exactly_once(cloud, "plant1.line1.telemetry", 2, first + during + after)


def test_plant_kill_9_mid_forwarding_resumes_exactly_once(make_appliance, tmp_path):
    # A bandwidth cap keeps forwarding going for a few seconds so the kill lands mid-stream.
    plant, cloud = start_pair(make_appliance, tmp_path, FORWARD, bandwidth="400KiB")
    create_topic(plant.bootstrap, "line1.telemetry", 3)
    produced = produce(plant.bootstrap, "line1.telemetry", 6000, partitions=3, value_size=200)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = sum(watermarks(cloud.bootstrap, "plant1.line1.telemetry", 3))
        if got > 600:
            break
        time.sleep(0.1)
    plant.kill()  # SIGKILL with Produce requests in flight and checkpoints unwritten
    mid = sum(watermarks(cloud.bootstrap, "plant1.line1.telemetry", 3))
    assert 0 < mid < len(produced), f"the kill did not land mid-forwarding ({mid} of {len(produced)})"
    plant.start()
    _assert_exactly_once(cloud, "plant1.line1.telemetry", 3, produced)


def test_with_a_bandwidth_cap_the_alarm_backlog_drains_first(make_appliance, tmp_path):
    plant, cloud = start_pair(make_appliance, tmp_path, FORWARD, bandwidth="256KiB")
    create_topic(plant.bootstrap, "alarms", 1)
    create_topic(plant.bootstrap, "line1.telemetry", 2)
    cloud.stop()  # build a backlog in both topics during an outage
    # Telemetry first, so its backlog is older: only the priority puts alarms ahead.
    telemetry = produce(plant.bootstrap, "line1.telemetry", 4000, partitions=2, value_size=200)  # ~1 MB
    alarms = produce(plant.bootstrap, "alarms", 400, value_size=100)  # ~60 kB
    cloud.start()
    deadline = time.monotonic() + 30
    alarms_done_at = None
    while time.monotonic() < deadline:
        a = sum(watermarks(cloud.bootstrap, "plant1.alarms", 1))
        t = sum(watermarks(cloud.bootstrap, "plant1.line1.telemetry", 2))
        if a >= len(alarms) and alarms_done_at is None:
            alarms_done_at = t
        if t >= len(telemetry):
            break
        time.sleep(0.05)
    assert alarms_done_at is not None, "alarms never arrived"
    assert alarms_done_at < len(telemetry) * 0.25, (
        f"{alarms_done_at} of {len(telemetry)} telemetry records were forwarded before the alarm backlog drained")
    _assert_exactly_once(cloud, "plant1.alarms", 1, alarms)
    _assert_exactly_once(cloud, "plant1.line1.telemetry", 2, telemetry)


def test_operator_pauses_and_resumes_the_uplink_through_the_admin_api(make_appliance, tmp_path):
    import json
    import urllib.request

    def post(url: str) -> dict:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=10) as r:
            return json.loads(r.read())

    plant, cloud = start_pair(make_appliance, tmp_path, FORWARD)
    create_topic(plant.bootstrap, "alarms", 1)
    first = produce(plant.bootstrap, "alarms", 50, prefix="a")
    assert wait_for_count(cloud.bootstrap, "plant1.alarms", 1, 50) == 50
    assert post(plant.admin_url + "/api/v1/uplink/pause")["paused"] is True
    held = produce(plant.bootstrap, "alarms", 50, prefix="b")
    time.sleep(1.5)
    assert watermarks(cloud.bootstrap, "plant1.alarms", 1) == [50], "a paused uplink forwarded data"
    with urllib.request.urlopen(plant.admin_url + "/api/v1/uplink", timeout=10) as r:
        status = json.loads(r.read())
    assert status["paused"] and status["topics"]["alarms"]["backlog_records"] == 50
    assert post(plant.admin_url + "/api/v1/uplink/resume")["paused"] is False
    _assert_exactly_once(cloud, "plant1.alarms", 1, first + held)
