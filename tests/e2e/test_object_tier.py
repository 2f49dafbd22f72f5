"""The object-storage tier through real Kafka clients and real processes.

- cloud role on S3 (moto_server over HTTP): everything survives the loss of the whole data dir.
- plant role on the local object store: kill -9 with uploads in flight loses nothing acknowledged.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.e2e.test_confluent_kafka import consume_all, create_topic, produce
from tests.storage.objects.moto_server import MotoServer, moto_fixture

moto = moto_fixture("module")


SMALL_TIER = """
[storage]
fsync = false
upload_bytes = "64KiB"
upload_interval = "200ms"
stream_object_bytes = "48KiB"
wal_segment_size = "64KiB"
group_commit_bytes = "64KiB"
"""


def _config(tmp_path, text: str = SMALL_TIER):
    path = tmp_path / "tier.toml"
    path.write_text(text)
    return path


def test_cloud_node_recovers_everything_from_the_bucket(make_appliance, tmp_path, moto):
    url = moto.url()
    args = ["--object-store", url]
    env = MotoServer.credentials_env()
    app = make_appliance("cloud", role="cloud", config=_config(tmp_path), extra_args=args, env=env).start()
    create_topic(app.bootstrap, "line.telemetry", 3)
    sent = produce(app.bootstrap, "line.telemetry", 600, prefix="a-")
    # a consumer group commits its position
    c = Consumer({"bootstrap.servers": app.bootstrap, "group.id": "historian", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("line.telemetry", 0, 0)])
    got = 0
    deadline = time.monotonic() + 20
    while got < 50 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got += 1
    c.commit(offsets=[TopicPartition("line.telemetry", 0, 50)], asynchronous=False)
    c.close()
    assert app.stop() == 0  # SIGTERM: the WAL tail is uploaded on the way out
    shutil.rmtree(app.data_dir)  # the disk is gone

    app.start()
    got = consume_all(app.bootstrap, "line.telemetry", len(sent))
    assert sorted((p, v) for p, _o, _k, v in got) == sorted((p, v) for p, _k, v in sent)
    c = Consumer({"bootstrap.servers": app.bootstrap, "group.id": "historian"})
    committed = c.committed([TopicPartition("line.telemetry", 0)], timeout=10)
    c.close()
    assert committed[0].offset == 50
    # the admin API tells what the tier holds
    with urllib.request.urlopen(app.admin_url + "/api/v1/storage", timeout=10) as resp:
        extra = json.loads(resp.read())["extra"]
    assert extra["object_store"] == url and extra["objects"] >= 1 and extra["fenced"] is False
    assert extra["requests"]["get"] >= 1
    # and it keeps going: new data lands after the recovered offsets
    more = produce(app.bootstrap, "line.telemetry", 30, prefix="b-")
    assert len(consume_all(app.bootstrap, "line.telemetry", len(sent) + len(more))) == len(sent) + len(more)


def test_plant_kill_9_with_uploads_in_flight_loses_nothing(make_appliance, tmp_path):
    app = make_appliance("plant", config=_config(tmp_path)).start()
    create_topic(app.bootstrap, "motor.current", 2)
    acked: list[tuple[int, int, bytes]] = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        if err is None:
            with lock:
                acked.append((msg.partition(), msg.offset(), msg.value()))

    p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all", "linger.ms": 2, "retries": 0,
                  "message.timeout.ms": 5000, "enable.idempotence": False})
    deadline = time.monotonic() + 15
    data = app.data_dir / "objects" / "data"
    i = 0
    seen_upload_at = None
    # Keep producing until uploads are happening, then a little longer, and kill mid-stream.
    while time.monotonic() < deadline and (seen_upload_at is None or i < seen_upload_at + 3000):
        p.produce("motor.current", value=b"sample-%06d-" % i + b"x" * 300, on_delivery=on_delivery)
        p.poll(0)
        i += 1
        if i % 200 == 0:
            p.poll(0.02)
            if seen_upload_at is None and data.exists() and any(data.iterdir()):
                seen_upload_at = i
    app.kill()
    p.flush(10)
    with lock:
        before = sorted(acked)
    assert len(before) >= 1000
    objects = list((app.data_dir / "objects" / "data").glob("*.so"))
    assert objects, "nothing was uploaded before the kill"
    app.start()
    got = {(pp, o): v for pp, o, _k, v in consume_all(app.bootstrap, "motor.current", len(before), timeout=40)}
    missing = [(pp, o) for pp, o, v in before if got.get((pp, o)) != v]
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {missing[:3]}"
