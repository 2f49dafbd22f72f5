"""Torn writes: the WAL tail truncated or garbled at random offsets between runs.

Each round produces acknowledged records, stops the appliance (kill -9 or SIGTERM, alternating),
then damages the newest WAL segment at a random offset inside its batch records: either cuts the
file there (a torn write) or flips bytes there (a garbled sector). On restart, recovery must trim
at the first damaged record (CRC) and serve everything before it: every partition holds the
previous rounds' data plus at least this round's records whose WAL record ends before the damage,
byte for byte, as a prefix of what was acknowledged with contiguous offsets (damaged records may
survive when the object-storage tier uploaded them before the stop); new records then continue
right after the served end.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from confluent_kafka import Producer

from appliance.kafka import records
from appliance.storage import wal_format as fmt
from tests.e2e.test_confluent_kafka import create_topic
from tests.faults.load import key_for, read_partitions, seq_of, value_for
from tests.faults.scale import knob, percentile, report, seed

TOPIC = "torn.tail"
PARTITIONS = 2


def _produce(bootstrap: str, first_seq: int, count: int) -> list[tuple[int, int, int]]:
    """(seq, partition, offset) of each acknowledged record."""
    acked, errors = [], []

    def on_delivery(err, msg):
        if err is None:
            acked.append((seq_of(msg.value()), msg.partition(), msg.offset()))
        else:
            errors.append(err)

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 1,
                  "batch.num.messages": 7})  # small batches: many WAL records to cut between
    for seq in range(first_seq, first_seq + count):
        p.produce(TOPIC, value=value_for(seq), key=key_for(seq), partition=seq % PARTITIONS, on_delivery=on_delivery)
        if seq % 50 == 0:
            p.flush(10)
    assert p.flush(30) == 0 and not errors, errors[:3]
    return acked


def _batch_records(segment: Path) -> list[tuple[int, int, list[int]]]:
    """(start, end, seqs) of every intact batch record in one segment file."""
    found = []
    for rec in fmt.scan(segment.read_bytes(), fmt.ScanResult()):
        if rec.type == fmt.REC_BATCH:
            seqs = [seq_of(r.value) for r in records.decode_records(rec.payload)]
            found.append((rec.pos, rec.pos + rec.size, seqs))
    return found


def _damage(segment: Path, rng: random.Random) -> tuple[str, int, set[int]]:
    """Cut or garble the segment at a random offset within its batches; returns (how, where, seqs lost)."""
    batches = _batch_records(segment)
    assert batches, f"no batch records in {segment.name}"
    where = rng.randrange(batches[0][0], batches[-1][1])
    lost = {s for start, end, seqs in batches if end > where for s in seqs}
    data = bytearray(segment.read_bytes())
    if rng.random() < 0.5:
        how = "truncated"
        del data[where:]
    else:
        how = "garbled"
        for i in range(where, min(len(data), where + rng.randint(1, 64))):
            data[i] ^= rng.randint(1, 255)
    segment.write_bytes(bytes(data))
    return how, where, lost


def test_torn_or_garbled_wal_tail_is_trimmed_and_intact_data_served(make_appliance):
    rounds = knob("FAULTS_TORN_ITERATIONS")
    rng = random.Random(seed())
    app = make_appliance().start()
    create_topic(app.bootstrap, TOPIC, PARTITIONS)
    wal = app.data_dir / "wal"
    expected: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}  # seqs served, per partition
    next_seq, acknowledged, trimmed, recovery = 0, 0, 0, []
    for r in range(rounds):
        count = rng.randint(100, 400)
        acked = _produce(app.bootstrap, next_seq, count)
        next_seq += count
        acknowledged += len(acked)
        for seq, p, offset in acked:  # offsets continue right after what the last recovery kept
            assert offset == len(expected[p]), f"round {r}: seq {seq} acked at p{p}@{offset}, expected {len(expected[p])}"
            expected[p].append(seq)
        app.kill() if r % 2 == 0 else app.stop()
        newest = sorted(wal.glob("*.wal"))[-1]
        how, where, damaged = _damage(newest, rng)
        started = time.monotonic()
        app.start()
        recovery.append(time.monotonic() - started)
        log = read_partitions(app.bootstrap, TOPIC, PARTITIONS)
        for p, entries in log.items():
            assert [o for o, _, _ in entries] == list(range(len(entries))), f"round {r}: p{p} offsets not contiguous"
            assert all(v == value_for(seq_of(v)) and k == key_for(seq_of(v)) for _, k, v in entries)
            served = [seq_of(v) for _, _, v in entries]
            # Everything before the damage is served. Damaged records may still be served when the
            # object-storage tier uploaded them before the stop; either way the partition is a
            # prefix of what was acknowledged, in order, with nothing missing in between.
            intact = [s for s in expected[p] if s not in damaged]
            keep = next((i for i, s in enumerate(expected[p]) if s in damaged), len(expected[p]))
            where_text = f"round {r} ({how} at byte {where} of {newest.name}): p{p}"
            assert served == expected[p][:len(served)], f"{where_text}: not a prefix of the acknowledged records"
            assert len(served) >= keep, f"{where_text}: serves {len(served)}, the {keep} before the damage are intact"
            assert set(intact[:keep]) <= set(served)
            trimmed += len(expected[p]) - len(served)
            expected[p] = served
        assert "wal_tail_truncated" in app.log_text()
    report("torn/garbled WAL tail between runs", iterations=rounds, acknowledged=acknowledged, lost=0,
           duplicates=0, trimmed_by_design=trimmed, recovery_p50_s=round(percentile(recovery, 50), 3),
           recovery_p99_s=round(percentile(recovery, 99), 3))
