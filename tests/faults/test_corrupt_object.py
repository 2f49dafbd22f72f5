"""A corrupted object in the store: bytes flipped or the object cut short, directly in the bucket
of a real S3 server (moto_server), then read by a cold node (empty data dir, recovering from the
bucket alone, so nothing is in any cache).

Each round damages one data object (CI: a flipped byte in a block and a truncated object; long:
random objects at random offsets, index and footer included) and walks every partition with raw
Fetch requests. What a user must see: every byte served is what was produced (never garbage); a
partition whose data sits in the damaged object is served up to it and then gets
KAFKA_STORAGE_ERROR (56) for the damaged range, again on every retry; every other partition and
topic serves everything; the node stays up, logs `object_corrupt` once per object and shows the
corruption in admin storage/status.
"""

from __future__ import annotations

import io
import random
from collections import defaultdict

from minio import Minio

from appliance.admin.client import AdminClient
from appliance.kafka import records
from appliance.storage import stream_object as so
from tests.e2e.checks import assert_all_consumed_in_order
from tests.e2e.test_confluent_kafka import consume_all, create_topic
from tests.faults import kafka_wire as wire
from tests.faults.scale import knob, report, seed
from tests.storage.objects.moto_server import ACCESS_KEY, SECRET_KEY, MotoServer, moto_fixture
from tests.uplink.helpers import produce

BUCKET, PREFIX = "corrupt", "millstream"
BAD, GOOD = "press.temps", "press.alarms"
PARTITIONS = 3
PER_PARTITION = 400
RANDOM_ROUNDS = knob("FAULTS_CORRUPT_ROUNDS")

# Nothing is uploaded before the SIGTERM; then one round gives every partition (~60 KB each, over
# stream_object_bytes) an object of its own, whatever the machine's speed.
CONFIG = """
[storage]
fsync = false
upload_bytes = "1MiB"
upload_interval = "1h"
stream_object_bytes = "16KiB"
wal_segment_size = "64KiB"
group_commit_bytes = "64KiB"
"""


moto = moto_fixture()


def _bucket(moto) -> Minio:
    return Minio(f"127.0.0.1:{moto.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False,
                 region="us-east-1")


def _get(client: Minio, key: str) -> bytes:
    resp = client.get_object(BUCKET, key)
    try:
        return resp.data
    finally:
        resp.close()
        resp.release_conn()


def _put(client: Minio, key: str, data: bytes) -> None:
    client.put_object(BUCKET, key, io.BytesIO(data), len(data))


def _data_objects(client: Minio) -> dict[str, set[tuple[str, int]]]:
    """Each data object's key -> the (topic, partition)s it holds, from the records' values."""
    out = {}
    for obj in client.list_objects(BUCKET, prefix=f"{PREFIX}/data/", recursive=True):
        data = _get(client, obj.object_name)
        held = set()
        for e in so.read_index(data):
            first = next(so.iter_batches(data[e.position:e.position + e.length]))
            value = next(iter(records.decode_records(first))).value
            topic, i = value.decode().split("-")[:2]
            held.add((topic, int(i) % PARTITIONS))
        out[obj.object_name] = held
    return out


def _walk(port: int, topic: str, partition: int) -> tuple[list[bytes], int | None]:
    """Raw Fetches from offset 0 to the end: (values served in order, error code that stopped it)."""
    values: list[bytes] = []
    offset = 0
    for _ in range(10_000):
        code, raw = wire.fetch(port, topic, partition, offset, max_bytes=64 << 10)
        if code:
            return values, code
        if not raw:
            return values, None
        for batch in so.iter_batches(raw):
            for rec in records.decode_records(batch):
                if rec.offset >= offset:
                    values.append(rec.value)
            offset = so.batch_meta(batch)[1] + 1
    raise AssertionError("walk did not end")


def _damage(data: bytes, rng: random.Random, how: str) -> tuple[bytes, str]:
    if how == "flip-block":
        e = so.read_index(data)[0]
        at = e.position + rng.randrange(e.length)
    elif how == "truncate":
        at = rng.randrange(1, len(data) - 1)
        return data[:at], f"truncated at {at} of {len(data)}"
    else:  # anywhere: blocks, index or footer
        at = rng.randrange(len(data))
    out = bytearray(data)
    out[at] ^= rng.randint(1, 255)
    return bytes(out), f"byte {at} of {len(data)} flipped"


def test_corrupt_object_is_detected_reported_and_the_rest_keeps_serving(make_appliance, tmp_path, moto):
    rng = random.Random(seed())
    cfg = tmp_path / "tier.toml"
    cfg.write_text(CONFIG)
    args = ["--object-store", f"s3://{BUCKET}/{PREFIX}?endpoint={moto.endpoint}&region=us-east-1"]
    env = MotoServer.credentials_env()
    writer = make_appliance("writer", role="cloud", config=cfg, extra_args=args, env=env).start()
    create_topic(writer.bootstrap, BAD, PARTITIONS)
    create_topic(writer.bootstrap, GOOD, PARTITIONS)
    bad = produce(writer.bootstrap, BAD, PER_PARTITION * PARTITIONS, partitions=PARTITIONS, value_size=120)
    good = produce(writer.bootstrap, GOOD, PER_PARTITION * PARTITIONS, partitions=PARTITIONS, value_size=120)
    assert writer.stop() == 0  # SIGTERM uploads the WAL tail: the bucket holds everything
    want: dict[int, list[bytes]] = defaultdict(list)
    for p, _k, v in bad:
        want[p].append(v)

    client = _bucket(moto)
    objects = _data_objects(client)
    single = [k for k, held in objects.items() if len(held) == 1 and next(iter(held))[0] == BAD]
    by_partition = {next(iter(objects[k]))[1]: k for k in single}
    assert set(by_partition) == set(range(PARTITIONS)), f"expected an object per partition: {objects}"
    # CI: a flipped byte inside partition 0's first block, partition 1's object cut short.
    plan = [[(by_partition[0], "flip-block"), (by_partition[1], "truncate")]]
    plan += [[(rng.choice(sorted(objects)), rng.choice(["anywhere", "truncate"]))] for _ in range(RANDOM_ROUNDS)]

    refused_total, served_total, checked_good = 0, 0, False
    for r, damages in enumerate(plan):
        originals = {key: _get(client, key) for key, _how in damages}
        hit: set[tuple[str, int]] = set()
        what = []
        for key, how in damages:
            damaged, detail = _damage(originals[key], rng, how)
            _put(client, key, damaged)
            hit |= objects[key]
            what.append(f"{key.rsplit('/', 1)[-1]}: {detail}")
        cold = make_appliance(f"cold{r}", role="cloud", config=cfg, extra_args=args, env=env).start()
        try:
            for p in range(PARTITIONS):
                served, code = _walk(cold.kafka_port, BAD, p)
                assert served == want[p][:len(served)], f"round {r} ({what}): p{p} served bytes that differ"
                served_total += len(served)
                if (BAD, p) in hit and code is not None:
                    assert code == 56, f"round {r} ({what}): p{p} got error {code}, expected KAFKA_STORAGE_ERROR"
                    assert wire.fetch(cold.kafka_port, BAD, p, len(served))[0] == 56, "a retry read garbage"
                    refused_total += 1
                else:
                    # A flip in bytes no check covers (e.g. the footer's reserved field) may serve
                    # intact data; anything not in the damaged object must serve completely.
                    assert code is None, f"round {r} ({what}): p{p} untouched, got error {code}"
                    assert len(served) == len(want[p]), f"round {r}: p{p} served {len(served)} of {len(want[p])}"
            if r == 0:
                assert refused_total == 2, "both damaged partitions must be refused"
                # A real client on the undamaged topic sees everything, byte for byte, in order.
                assert_all_consumed_in_order(good, consume_all(cold.bootstrap, GOOD, len(good)))
                checked_good = True
                with AdminClient(cold.admin_url, timeout=10) as admin:
                    storage, status = admin.storage(), admin.status()
                assert storage.extra["corrupt_objects"] == 2 and storage.extra["corrupt_reads"] >= 4, storage.extra
                assert any("corrupt object" in w for w in status.warnings), status.warnings
                text = cold.log_text()
                assert text.count("event=object_corrupt") == 2, "one log line per corrupt object"
            assert cold.proc.poll() is None, "the cold node exited"
            assert wire.api_versions_ok(cold.kafka_port)
            assert "Traceback" not in cold.log_text()
        finally:
            cold.kill()
            for key, data in originals.items():
                _put(client, key, data)
    assert checked_good
    report("corrupted object in the store, read by a cold node", iterations=len(plan),
           acknowledged=len(bad) + len(good), lost=0, duplicates=0, damaged_ranges_refused=refused_total,
           records_served_from_damaged_topic=served_total, wrong_bytes_served=0)
