"""WAN cut between plant and cloud, repeated while crashing either side.

A plant appliance forwards to a cloud appliance through a link the test cuts and restores
(tests/faults/proxy.py). The cloud advertises 127.0.0.2, where the link listens on the cloud's own
port, so every uplink connection (bootstrap and the leader from Metadata) crosses the link.

Each iteration: produce on the plant (acks=all, idempotence) while forwarding runs; cut the link
at a random moment (RST, or a black hole where nothing flows and connections hang); produce more;
kill -9 the plant or the cloud (chosen at random), either while the link is down or just after it
returns, mid-catch-up; restore the link (a black hole is sometimes ridden out by the same TCP
connections, as a short blip is); wait until the cloud holds everything acknowledged so far. At the
end every record the plant acknowledged is in the cloud exactly once, in per-partition order.
"""

from __future__ import annotations

import random
import time

from tests.e2e.checks import assert_all_consumed_in_order
from tests.e2e.test_confluent_kafka import create_topic
from tests.faults.proxy import TcpProxy
from tests.faults.scale import LONG, knob, percentile, report, seed
from tests.uplink.helpers import plant_config, produce, read_topic, watermarks

TOPIC, CLOUD_TOPIC = "line1.telemetry", "plant1.line1.telemetry"
PARTITIONS = 2
ITERATIONS = knob("FAULTS_WAN_ITERATIONS")
PER_STEP = 500 if LONG else 200
WAN_HOST = "127.0.0.2"  # loopback too; the cut link listens here on the cloud's port


def _caught_up(cloud, expected: int, timeout: float = 90.0) -> tuple[float, int]:
    """Wait until the cloud topic holds `expected` records; (seconds waited, records held)."""
    started = time.monotonic()
    deadline = started + timeout
    total = 0
    while time.monotonic() < deadline:
        total = sum(watermarks(cloud.bootstrap, CLOUD_TOPIC, PARTITIONS))
        if total >= expected:
            return time.monotonic() - started, total
        time.sleep(0.1)
    raise AssertionError(f"the cloud holds {total} of {expected} acknowledged records after {timeout}s")


def test_wan_cut_repeated_while_crashing_either_side_loses_and_duplicates_nothing(make_appliance, tmp_path):
    rng = random.Random(seed())
    cloud = make_appliance("cloud", role="cloud", extra_args=["--advertised-host", WAN_HOST]).start()
    link = TcpProxy(cloud.kafka_port, listen_host=WAN_HOST, listen_port=cloud.kafka_port).start()
    cfg = plant_config(tmp_path / "plant.toml", link.address, [{"prefix": "line1.", "priority": 5}])
    plant = make_appliance("plant", config=cfg).start()
    create_topic(plant.bootstrap, TOPIC, PARTITIONS)
    sides = {"plant": plant, "cloud": cloud}
    produced: list[tuple[int, bytes, bytes]] = []
    recovery, kills = [], {"plant": 0, "cloud": 0}
    try:
        for it in range(ITERATIONS):
            produced += produce(plant.bootstrap, TOPIC, PER_STEP, prefix=f"i{it}a-", partitions=PARTITIONS,
                                value_size=rng.randint(0, 300))
            time.sleep(rng.uniform(0.0, 0.5))  # forwarding in flight
            mode = rng.choice(["reset", "blackhole"])
            link.cut(mode)
            produced += produce(plant.bootstrap, TOPIC, PER_STEP, prefix=f"i{it}b-", partitions=PARTITIONS,
                                value_size=rng.randint(0, 300))
            victim = rng.choice(["plant", "cloud"])
            kills[victim] += 1
            while_cut = rng.random() < 0.5
            if while_cut:
                sides[victim].kill()
                sides[victim].start()
            link.restore(keep=mode == "blackhole" and rng.random() < 0.5)
            restored = time.monotonic()
            if not while_cut:  # crash mid-catch-up
                time.sleep(rng.uniform(0.0, 0.4))
                sides[victim].kill()
                sides[victim].start()
            _waited, held = _caught_up(cloud, len(produced))
            recovery.append(time.monotonic() - restored)
            assert held == len(produced), (f"iteration {it} ({mode}, kill {victim} "
                                           f"{'while cut' if while_cut else 'after restore'}): "
                                           f"{held - len(produced)} duplicates")
        time.sleep(1.0)  # a late duplicate would show up as a higher watermark
        held = sum(watermarks(cloud.bootstrap, CLOUD_TOPIC, PARTITIONS))
        got = read_topic(cloud.bootstrap, CLOUD_TOPIC, len(produced), timeout=60)
    finally:
        link.close()
    assert_all_consumed_in_order(produced, got)
    assert link.connections >= ITERATIONS and link.bytes_forwarded > 0, "the uplink did not cross the link"
    for app in (plant, cloud):
        assert app.proc.poll() is None
        assert "Traceback" not in app.log_text()
    report("WAN cut plant->cloud repeated, kill -9 of either side", iterations=ITERATIONS,
           acknowledged=len(produced), lost=len(produced) - len(got), duplicates=held - len(produced),
           kills_plant=kills["plant"], kills_cloud=kills["cloud"],
           recovery_p50_s=round(percentile(recovery, 50), 3), recovery_p99_s=round(percentile(recovery, 99), 3))
    assert held == len(produced)
