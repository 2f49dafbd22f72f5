"""Uplink benchmark: a plant and a cloud appliance process on loopback (run by hand).

    .venv/bin/python bench/uplink.py [--backlog-mb 32] [--value-size 1024] [--partitions 3]
    .venv/bin/python bench/uplink.py --mode mqtt [--small-batches 20000] [--latency-rate 200]

--mode kafka (default):

1. Healthy link: records produced to the plant (librdkafka, acks=all) at a steady rate, each
   carrying its send time; a consumer on the cloud topic measures the end-to-end latency
   (plant produce -> uplink -> cloud -> consumer), p50/p99.
2. Outage: the cloud is stopped and a backlog of --backlog-mb is produced to the plant as fast
   as it takes it: the ingest rate, from the first produce call to the last acknowledgement (the
   producer's connection is set up before). The cloud is started again; the catch-up rate is the
   backlog over the uplink's own window, its first Produce request of the new session to its last
   acknowledged batch (uplink status `first_send_at`, `last_ack_at`; start-up and reconnect
   back-off are reported apart), in MB/s and as the ratio catch-up rate / ingest rate (target
   >= 5x), plus the ratio against a nominal plant rate. Also per MB: CPU seconds of the plant and
   of the cloud process, Produce requests, uplink checkpoints. --profile DIR runs py-spy on both.
Exactly-once is checked at the end by the cloud's record count. Loopback only; every loop is
bounded in count and time.

--mode mqtt (the MQTT ingest path, whose batches are small when messages trickle in):
1. Healthy link: an MQTT client publishes (QoS 1) at a steady rate to the plant, whose [[mqtt_map]]
   maps it to a forwarded topic; a consumer on the cloud topic measures plant MQTT publish ->
   cloud consumer latency, p50/p99.
2. Small-batch backlog: during an outage --small-batches records are produced as one-record
   batches (librdkafka batch.num.messages=1, as a trickle of MQTT messages is stored); after the
   cloud returns: catch-up time and records/s, the plant's CPU seconds during the catch-up, and the
   cloud's Kafka requests per 1000 records forwarded (how well the uplink merges small batches).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka_produce_consume import disk_write_fsync_mbps  # noqa: E402  (bench/ is the script's folder)

from tests.harness import ApplianceProcess  # noqa: E402
from tests.uplink.helpers import plant_config, watermarks  # noqa: E402

TOPIC = "bench.telemetry"
CLOUD_TOPIC = "site1.bench.telemetry"


def latency_run(plant: ApplianceProcess, cloud: ApplianceProcess, count: int, rate: float, partitions: int) -> list[float]:
    c = Consumer({"bootstrap.servers": cloud.bootstrap, "group.id": f"lat-{uuid.uuid4()}",
                  "auto.offset.reset": "latest", "fetch.wait.max.ms": 10, "enable.auto.commit": False})
    c.subscribe([CLOUD_TOPIC])
    deadline = time.monotonic() + 10
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.1)
    p = Producer({"bootstrap.servers": plant.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0})
    lat: list[float] = []
    warmup = int(rate)  # the first second: the consumer is still settling its fetch positions
    interval = 1 / rate
    start = time.monotonic()
    for i in range(count + warmup):
        target = start + i * interval
        while time.monotonic() < target:
            msg = c.poll(min(0.002, max(target - time.monotonic(), 0)))
            if msg is not None and msg.error() is None:
                _record(lat, msg.value(), warmup)
        p.produce(TOPIC, value=struct.pack(">di", time.time(), i) + b"x" * 100, partition=i % partitions)
        p.poll(0)
    p.flush(10)
    deadline = time.monotonic() + 10
    while len(lat) < count and time.monotonic() < deadline:
        msg = c.poll(0.05)
        if msg is not None and msg.error() is None:
            _record(lat, msg.value(), warmup)
    c.close()
    return lat


def _record(lat: list[float], value: bytes, warmup: int) -> None:
    sent, index = struct.unpack(">di", value[:12])
    if index >= warmup:
        lat.append(time.time() - sent)


def build_backlog(plant: ApplianceProcess, total_bytes: int, value_size: int, partitions: int) -> tuple[int, float]:
    """Produce the backlog as fast as the plant takes it; (records, seconds from the first produce
    call to the last acknowledgement). The producer's connection and metadata are set up first,
    outside the window."""
    p = Producer({"bootstrap.servers": plant.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "queue.buffering.max.kbytes": 65536})
    p.list_topics(TOPIC, timeout=10)
    value = os.urandom(value_size)
    n = total_bytes // value_size
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(TOPIC, key=str(i % 64).encode(), value=value, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    return n, time.perf_counter() - start


def uplink_status(app: ApplianceProcess) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{app.admin_url}/api/v1/uplink", timeout=10) as r:
        return json.loads(r.read())


def start_profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy (from the venv) sampling `pid` without pausing it, 200/s, every busy thread apart
    (the first frame names the thread); collapsed stacks in `out`."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--nonblocking", "--threads", "-r", "200", "-f", "raw", "-o", str(out),
                             "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


MQTT_TOPIC = "bench.mqtt"
MQTT_CLOUD_TOPIC = "site1.bench.mqtt"


def mqtt_latency_run(plant: ApplianceProcess, cloud: ApplianceProcess, count: int, rate: float) -> list[float]:
    import paho.mqtt.client as mqtt

    c = Consumer({"bootstrap.servers": cloud.bootstrap, "group.id": f"lat-{uuid.uuid4()}",
                  "auto.offset.reset": "latest", "fetch.wait.max.ms": 10, "enable.auto.commit": False})
    c.subscribe([MQTT_CLOUD_TOPIC])
    deadline = time.monotonic() + 10
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.1)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv311)
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", plant.mqtt_port)
    pub.loop_start()
    lat: list[float] = []
    warmup = int(rate)
    interval = 1 / rate
    start = time.monotonic()
    try:
        for i in range(count + warmup):
            target = start + i * interval
            while time.monotonic() < target:
                msg = c.poll(min(0.002, max(target - time.monotonic(), 0)))
                if msg is not None and msg.error() is None:
                    _record(lat, msg.value(), warmup)
            pub.publish(f"bench/line1/m{i % 7}", struct.pack(">di", time.time(), i) + b"x" * 100, qos=1)
        deadline = time.monotonic() + 15
        while len(lat) < count and time.monotonic() < deadline:
            msg = c.poll(0.05)
            if msg is not None and msg.error() is None:
                _record(lat, msg.value(), warmup)
    finally:
        pub.loop_stop()
        pub.disconnect()
        c.close()
    return lat


def small_batch_backlog(plant: ApplianceProcess, topic: str, n: int, partitions: int) -> float:
    """n one-record batches (librdkafka batch.num.messages=1); returns seconds taken."""
    p = Producer({"bootstrap.servers": plant.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 0, "batch.num.messages": 1})
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=b"v%09d" % i + b"x" * 90, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.01)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(300) == 0
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of the process's main (trio) thread alone; the rest went to worker threads."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kafka_requests(app: ApplianceProcess) -> int:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{app.admin_url}/api/v1/status", timeout=10) as r:
        return json.loads(r.read())["kafka"]["requests_total"]


def mqtt_main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="millstream-bench-uplink-mqtt-"))
    cloud = ApplianceProcess(work / "cloud", role="cloud").start()
    extra = {} if args.merge_bytes is None else {"merge_bytes": args.merge_bytes}
    cfg = plant_config(work / "plant.toml", cloud.bootstrap, [{"prefix": "bench."}], site="site1",
                       reconnect_backoff="50ms", reconnect_backoff_max="250ms", **extra)
    with open(cfg, "a") as fh:
        fh.write(f'[kafka]\nnum_partitions = {args.partitions}\n'
                 '[[mqtt_map]]\nfilter = "bench/#"\nkafka_topic = "bench.mqtt"\nkey = "{#}"\n')
    plant = ApplianceProcess(work / "plant", config=cfg).start()
    try:
        admin = AdminClient({"bootstrap.servers": plant.bootstrap})
        admin.create_topics([NewTopic(MQTT_TOPIC, num_partitions=args.partitions, replication_factor=1)])[MQTT_TOPIC].result(10)
        warm = Producer({"bootstrap.servers": plant.bootstrap, "acks": "all"})
        for i in range(args.partitions):
            warm.produce(MQTT_TOPIC, value=struct.pack(">di", 0, -1), partition=i)
        warm.flush(10)
        deadline = time.monotonic() + 20
        while sum(watermarks(cloud.bootstrap, MQTT_CLOUD_TOPIC, args.partitions)) < args.partitions and time.monotonic() < deadline:
            time.sleep(0.2)
        base = sum(watermarks(cloud.bootstrap, MQTT_CLOUD_TOPIC, args.partitions))
        lat = sorted(mqtt_latency_run(plant, cloud, args.latency_count, args.latency_rate))
        print(f"healthy link, MQTT QoS 1 at {args.latency_rate:g}/s: {len(lat)}/{args.latency_count} records, "
              f"plant MQTT publish -> cloud consumer p50 {statistics.median(lat) * 1000:.1f} ms, "
              f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")
        time.sleep(1)
        before = sum(watermarks(cloud.bootstrap, MQTT_CLOUD_TOPIC, args.partitions))
        cloud.stop()
        n = args.small_batches
        took = small_batch_backlog(plant, MQTT_TOPIC, n, args.partitions)
        print(f"outage: {n} one-record batches taken by the plant in {took:.1f} s")
        cloud.start()
        req0, cpu0 = kafka_requests(cloud), cpu_seconds(plant.proc.pid)
        start = time.perf_counter()
        expected = before + n
        got = wait_for_total(cloud, MQTT_CLOUD_TOPIC, args.partitions, expected, args.timeout, poll=0.05)
        catchup_s = time.perf_counter() - start
        cpu = cpu_seconds(plant.proc.pid) - cpu0
        reqs = kafka_requests(cloud) - req0
        print(f"small-batch catch-up: {got - before}/{n} records in {catchup_s:.2f} s = {n / catchup_s:,.0f} records/s; "
              f"plant CPU {cpu:.2f} s ({cpu / n * 1e6:.0f} us/record); cloud Kafka requests {reqs} "
              f"({reqs / n * 1000:.1f} per 1000 records, incl. the test's own watermark polls)")
        check_exactly_once(cloud, MQTT_CLOUD_TOPIC, args.partitions, base, args.latency_count + int(args.latency_rate) + n)
        print(f"load average: {os.getloadavg()[0]:.1f}")
    finally:
        plant.kill()
        cloud.kill()
        shutil.rmtree(work, ignore_errors=True)  # hundreds of MB per run: leave no copies behind


def wait_for_total(cloud: ApplianceProcess, topic: str, partitions: int, expected: int, timeout: float, *, poll: float) -> int:
    """Poll the cloud topic's summed high watermarks until they reach `expected` (or time out)."""
    got = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sum(watermarks(cloud.bootstrap, topic, partitions))
        if got >= expected:
            break
        time.sleep(poll)
    return got


def check_exactly_once(cloud: ApplianceProcess, topic: str, partitions: int, base: int, sent: int) -> None:
    """After a settling second, the cloud topic must hold exactly what was sent since `base`."""
    time.sleep(1.0)
    final = sum(watermarks(cloud.bootstrap, topic, partitions))
    print(f"exactly once: cloud holds {final - base} records after the warm-up, sent {sent} -> "
          f"{'OK' if final - base == sent else 'MISMATCH'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog-mb", type=float, default=32)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--latency-count", type=int, default=1000)
    ap.add_argument("--latency-rate", type=float, default=200, help="records/s during the latency run")
    ap.add_argument("--nominal-ingest-mbps", type=float, default=1.0, help="a plant's steady ingest, for the ratio")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--mode", choices=("kafka", "mqtt"), default="kafka")
    ap.add_argument("--small-batches", type=int, default=20000, help="--mode mqtt: one-record batches in the backlog")
    ap.add_argument("--merge-bytes", type=int, default=None, help="[uplink] merge_bytes (0: no merging)")
    ap.add_argument("--max-request-bytes", type=int, default=None, help="[uplink] max_request_bytes")
    ap.add_argument("--profile", default=None, help="a folder: py-spy both processes during the catch-up (raw stacks)")
    args = ap.parse_args()
    if args.mode == "mqtt":
        return mqtt_main(args)
    work = Path(tempfile.mkdtemp(prefix="millstream-bench-uplink-"))
    disk = disk_write_fsync_mbps(work)  # what this disk takes, durably, for the bound printed at the end
    cloud = ApplianceProcess(work / "cloud", role="cloud").start()
    extra = {k: v for k, v in (("max_request_bytes", args.max_request_bytes), ("merge_bytes", args.merge_bytes))
             if v is not None}
    cfg = plant_config(work / "plant.toml", cloud.bootstrap, [{"prefix": "bench."}], site="site1",
                       reconnect_backoff="50ms", reconnect_backoff_max="250ms", **extra)
    plant = ApplianceProcess(work / "plant", config=cfg).start()
    try:
        admin = AdminClient({"bootstrap.servers": plant.bootstrap})  # keep a reference: futures die with it
        admin.create_topics([NewTopic(TOPIC, num_partitions=args.partitions, replication_factor=1)])[TOPIC].result(10)
        warm = Producer({"bootstrap.servers": plant.bootstrap, "acks": "all"})
        for i in range(args.partitions):
            warm.produce(TOPIC, value=struct.pack(">d", 0), partition=i)
        warm.flush(10)
        deadline = time.monotonic() + 20
        while sum(watermarks(cloud.bootstrap, CLOUD_TOPIC, args.partitions)) < args.partitions and time.monotonic() < deadline:
            time.sleep(0.2)
        base = sum(watermarks(cloud.bootstrap, CLOUD_TOPIC, args.partitions))

        lat = sorted(latency_run(plant, cloud, args.latency_count, args.latency_rate, args.partitions))
        print(f"healthy link: {len(lat)}/{args.latency_count} records at {args.latency_rate:g}/s, "
              f"end-to-end latency p50 {statistics.median(lat) * 1000:.1f} ms, "
              f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")
        time.sleep(1)
        before = sum(watermarks(cloud.bootstrap, CLOUD_TOPIC, args.partitions))

        cloud.stop()
        total = int(args.backlog_mb * 1e6)
        n, ingest_s = build_backlog(plant, total, args.value_size, args.partitions)
        ingest = n * args.value_size / ingest_s / 1e6
        print(f"outage: backlog of {n} records ({n * args.value_size / 1e6:.1f} MB) taken by the plant in "
              f"{ingest_s:.2f} s = {ingest:.1f} MB/s ingest")
        pre = uplink_status(plant)  # the link is down: no session
        sent0 = pre["sent_records"]
        cloud.start()
        t_ready = time.time()
        cpu0 = cpu_seconds(plant.proc.pid), cpu_seconds(cloud.proc.pid)
        main0 = main_thread_cpu(plant.proc.pid), main_thread_cpu(cloud.proc.pid)
        req0, up0 = kafka_requests(cloud), uplink_status(plant)
        spies = []
        if args.profile:
            out = Path(args.profile)
            out.mkdir(parents=True, exist_ok=True)
            spies = [start_profiler(plant.proc.pid, out / "plant.txt"), start_profiler(cloud.proc.pid, out / "cloud.txt")]
        deadline = time.monotonic() + args.timeout
        up = up0
        while time.monotonic() < deadline:  # the plant's own count of acknowledged records
            up = uplink_status(plant)
            if up["sent_records"] - sent0 >= n:
                break
            time.sleep(0.1)  # the window comes from the plant's own marks, not from this poll
        cpu = cpu_seconds(plant.proc.pid) - cpu0[0], cpu_seconds(cloud.proc.pid) - cpu0[1]
        main = main_thread_cpu(plant.proc.pid) - main0[0], main_thread_cpu(cloud.proc.pid) - main0[1]
        reqs = kafka_requests(cloud) - req0
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        expected = before + n
        got = wait_for_total(cloud, CLOUD_TOPIC, args.partitions, expected, 30, poll=0.1)
        mb = n * args.value_size / 1e6
        if up["sessions"] - pre["sessions"] > 1:  # the window below covers the last session only
            print(f"warning: {up['sessions'] - pre['sessions']} uplink sessions during the catch-up")
        window = up["last_ack_at"] - up["first_send_at"]
        rate = mb / window
        print(f"catch-up: {got - before}/{n} records; first Produce {up['first_send_at'] - t_ready:.2f} s after the "
              f"cloud was ready (connect {up['session_started_at'] - t_ready:.2f} s); first Produce -> last ack "
              f"{window:.2f} s = {rate:.1f} MB/s (from cloud ready to last ack: {mb / (up['last_ack_at'] - t_ready):.1f} MB/s)")
        print(f"catch-up / ingest {rate / ingest:.2f}x (target >= 5x: {'met' if rate >= 5 * ingest else 'missed'}); "
              f"to a {args.nominal_ingest_mbps:g} MB/s plant {rate / args.nominal_ingest_mbps:.1f}x")
        preqs = up["produce_requests"] - up0["produce_requests"]
        print(f"CPU per MB: plant {cpu[0] / mb * 1000:.1f} ms, cloud {cpu[1] / mb * 1000:.1f} ms "
              f"(plant {cpu[0]:.2f} s, cloud {cpu[1]:.2f} s over {mb:.1f} MB; main threads {main[0]:.2f} s, "
              f"{main[1]:.2f} s); Produce requests {preqs} "
              f"({preqs / mb:.1f}/MB, {mb / max(preqs, 1) * 1000:.0f} kB each), cloud Kafka requests {reqs}, "
              f"uplink checkpoints {up['checkpoints'] - up0['checkpoints']}, merged batches "
              f"{up['merged_batches'] - up0['merged_batches']}")
        # What 5x would take here: plant and cloud share these cores and this disk, and the cloud
        # writes every byte twice (its WAL, then its local-directory object store).
        need = 5 * ingest
        cores = need * (cpu[0] + cpu[1]) / mb
        print(f"5x this ingest = {need:.0f} MB/s of catch-up: at the CPU per MB above {cores:.1f} of "
              f"{os.cpu_count()} cores, and {2 * need:.0f} MB/s of fsync'd cloud writes against this disk's "
              f"{disk:.0f} MB/s (sequential 1 MiB write + fsync)")
        check_exactly_once(cloud, CLOUD_TOPIC, args.partitions, base, args.latency_count + int(args.latency_rate) + n)
        print(f"load average: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        plant.kill()
        cloud.kill()
        shutil.rmtree(work, ignore_errors=True)  # hundreds of MB per run: leave no copies behind


if __name__ == "__main__":
    main()
