"""Disk full: the data dir on a real, small filesystem (tmpfs with size=) that runs out of space.

Producers get KAFKA_STORAGE_ERROR (retriable) while the disk is full, the process stays up and keeps
serving reads, nothing acknowledged before is damaged, and when space returns the producer's
retried records are stored exactly once; a kill -9 afterwards loses nothing either.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid

import pytest

from appliance.admin.client import AdminClient
from tests.e2e.test_confluent_kafka import create_topic
from tests.faults import kafka_wire as wire
from tests.faults.load import IdempotentLoad, read_partitions, verify
from tests.faults.scale import report

TOPIC = "disk.full"
PARTITIONS = 2


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB tmpfs; skipped (with the reason) where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path) -> int:
    """Write a filler file until the filesystem says ENOSPC; returns its size."""
    written = 0
    with open(path, "wb", buffering=0) as fh:
        for chunk in (1 << 20, 64 << 10, 4 << 10, 512):
            block = os.urandom(chunk)
            while True:
                try:
                    fh.write(block)
                    written += chunk
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    return written


def _appliance_on(disk, make_appliance, tmp_path):
    # small_disk is set up first, so it is torn down (unmounted) after the appliance is killed.
    app = make_appliance("disk/data")
    app.log_path = tmp_path / "appliance.log"  # the log must not compete for the small disk
    return app


def test_full_disk_pushes_back_stays_up_and_recovers_without_loss(small_disk, make_appliance, tmp_path):
    app = _appliance_on(small_disk, make_appliance, tmp_path).start()
    create_topic(app.bootstrap, TOPIC, PARTITIONS)
    load = IdempotentLoad(app.bootstrap, TOPIC, PARTITIONS, max_in_flight_records=2000).start()
    assert load.wait_for_acks(3000, 30), load.errors[:3]
    filler = small_disk / f"filler-{uuid.uuid4().hex}"
    _fill(filler)
    acked_at_full = load.acked_count()
    time.sleep(0.5)  # let anything already written when the disk filled settle

    # While full: the producer's records wait (retried), a raw produce sees the retriable error,
    # the process stays up and still answers metadata and reads.
    stalled_from = load.acked_count()
    time.sleep(2)
    assert load.acked_count() == stalled_from, "acks while the disk is full"
    assert acked_at_full <= stalled_from
    code = wire.produce_error(app.kafka_port, TOPIC, 0, [b"while-full"])
    assert code == 56, f"expected KAFKA_STORAGE_ERROR (56) on a full disk, got {code}"
    assert app.proc.poll() is None, "appliance exited on a full disk"
    assert wire.api_versions_ok(app.kafka_port)
    during = read_partitions(app.bootstrap, TOPIC, PARTITIONS)
    assert sum(map(len, during.values())) >= stalled_from
    assert "wal_write_failed" in app.log_text()

    # Space returns: the producer's retries go through, once each.
    filler.unlink()
    freed_at = time.monotonic()
    assert load.wait_for_acks(stalled_from + 1, 30), f"no ack after space returned: {load.errors[:3]}"
    recovery = time.monotonic() - freed_at
    # The episode is over and the status says so (before the fix the WAL's error stayed for good).
    with AdminClient(app.admin_url, timeout=10) as admin:
        status = admin.status()
    assert status.health == "ok", status.warnings
    time.sleep(1)
    assert load.stop() == 0
    assert not load.errors, load.errors[:5]
    verdict = verify(load.acked, read_partitions(app.bootstrap, TOPIC, PARTITIONS))
    assert verdict.acknowledged == load.sent and not verdict.problems(), verdict.problems()

    # A crash after the episode loses nothing: the abandoned segment tail is not replayed as data.
    app.kill()
    app.start()
    after = verify(load.acked, read_partitions(app.bootstrap, TOPIC, PARTITIONS))
    assert not after.problems(), after.problems()
    assert app.proc.poll() is None
    report("disk full (48 MiB tmpfs filled, then freed)", iterations=1, acknowledged=after.acknowledged,
           lost=len(after.lost), duplicates=after.duplicates, recovery_p50_s=round(recovery, 3),
           recovery_p99_s=round(recovery, 3))


def test_restart_on_a_full_disk_fails_cleanly_then_starts_with_all_data(small_disk, make_appliance, tmp_path):
    app = _appliance_on(small_disk, make_appliance, tmp_path).start()
    create_topic(app.bootstrap, TOPIC, PARTITIONS)
    load = IdempotentLoad(app.bootstrap, TOPIC, PARTITIONS).start()
    assert load.wait_for_acks(2000, 30), load.errors[:3]
    assert load.stop() == 0 and not load.errors
    filler = small_disk / "filler"
    _fill(filler)
    app.kill()
    with pytest.raises(RuntimeError, match="exited with 1"):
        app.start()
    text = app.log_text()
    assert "startup_failed" in text and "No space left on device" in text
    assert "Traceback" not in text, "a full disk at start-up should be one clear log line, not a traceback"
    filler.unlink()
    app.start()
    verdict = verify(load.acked, read_partitions(app.bootstrap, TOPIC, PARTITIONS))
    assert not verdict.problems(), verdict.problems()
