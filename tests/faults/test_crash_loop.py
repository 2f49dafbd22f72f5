"""Crash loop: kill -9 the appliance at random moments under continuous idempotent load.

After every restart the producer (acks=all, enable.idempotence=true) carries on; at the end every
acknowledged send must be stored exactly once, at the offset it was acknowledged with, byte for
byte, in per-partition send order. Recovery time is measured from the kill to the appliance being
ready again, and to the first new acknowledgement.
"""

from __future__ import annotations

import random
import time

from tests.e2e.test_confluent_kafka import create_topic
from tests.faults.load import IdempotentLoad, read_partitions, verify
from tests.faults.scale import knob, percentile, report, seed

TOPIC = "crash.loop"
PARTITIONS = 3


def test_kill_9_loop_under_idempotent_load_loses_and_duplicates_nothing(make_appliance):
    iterations = knob("FAULTS_CRASH_ITERATIONS")
    rng = random.Random(seed())
    app = make_appliance().start()
    create_topic(app.bootstrap, TOPIC, PARTITIONS)
    load = IdempotentLoad(app.bootstrap, TOPIC, PARTITIONS).start()
    assert load.wait_for_acks(200, 30), f"no steady load: {load.errors[:3]}"
    to_ready, to_first_ack = [], []
    for _ in range(iterations):
        # Kill at a random moment: mid-batch, mid-fsync, mid-response — wherever the load is.
        time.sleep(rng.uniform(0.05, 0.6))
        killed_at = time.monotonic()
        app.kill()
        acked_before = load.acked_count()
        app.start()
        to_ready.append(time.monotonic() - killed_at)
        assert load.wait_for_acks(acked_before + 1, 60), f"no acknowledgement after restart: {load.errors[:3]}"
        to_first_ack.append(time.monotonic() - killed_at)
    undelivered = load.stop()
    assert undelivered == 0, f"{undelivered} records never delivered"
    assert not load.errors, f"producer errors: {load.errors[:5]}"

    log = read_partitions(app.bootstrap, TOPIC, PARTITIONS)
    verdict = verify(load.acked, log)
    report("crash loop (kill -9 under idempotent load)", iterations=iterations, acknowledged=verdict.acknowledged,
           lost=len(verdict.lost), duplicates=verdict.duplicates,
           recovery_ready_p50_s=round(percentile(to_ready, 50), 3), recovery_ready_p99_s=round(percentile(to_ready, 99), 3),
           recovery_p50_s=round(percentile(to_first_ack, 50), 3), recovery_p99_s=round(percentile(to_first_ack, 99), 3))
    assert verdict.acknowledged == load.sent
    assert not verdict.problems(), verdict.problems()
    assert "Traceback" not in app.log_text()
