"""MQTT ingestion benchmark: Millstream (durable PUBACK) vs Mosquitto (Debian, no fsync), same run.

    PYTHONPATH=. .venv/bin/python bench/mqtt_ingest.py [--messages 200000] [--procs 2] [--conns 4] [--repeat 5]

Load generator: `--procs` processes, each with `--conns` MQTT 3.1.1 connections on plain sockets,
sending pre-encoded PUBLISH packets (200-byte payloads) pipelined: QoS 0 in large writes (then a
PINGREQ whose PINGRESP marks the end), QoS 1 with up to `--window` unacknowledged messages per
connection. Every loop is bounded by the message count and a deadline.

Reported per broker and QoS: accepted msgs/s; for QoS 1 the PUBACK latency p50/p99 and the
ratio to Mosquitto; Millstream's CPU seconds per 100k messages (utime+stime of its process). Then
end to end: a paced QoS 1 publisher at `--e2e-rate` msgs/s for `--e2e-seconds`, each payload
stamped with its send time, read back by a confluent-kafka consumer from the mapped topic; p50/p99
of publish -> consumer delivery.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import select
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import ApplianceProcess, free_port  # noqa: E402

PAYLOAD = 200
MAPPING = """
[[mqtt_map]]
filter = "bench/{worker}/#"
kafka_topic = "bench.{worker}"
key = "{#}"

[[mqtt_map]]
filter = "e2e/#"
kafka_topic = "bench.e2e"
key = "{#}"
"""


def _rl(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return struct.pack(">H", len(s)) + s


def connect_packet(client_id: str) -> bytes:
    body = _str(b"MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60) + _str(client_id.encode())
    return b"\x10" + _rl(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, qos: int, pid: int = 0) -> bytes:
    body = _str(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _rl(len(body)) + body


def open_conn(port: int, client_id: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(connect_packet(client_id))
    ack = b""
    while len(ack) < 4:
        chunk = s.recv(4 - len(ack))
        if not chunk:
            raise ConnectionError("closed before CONNACK")
        ack += chunk
    if ack[0] != 0x20 or ack[3] != 0:
        raise ConnectionError(f"CONNACK refused: {ack!r}")
    return s


def worker(port: int, wid: int, conns: int, per_conn: int, qos: int, window: int, start_at: float,
           deadline: float, out: mp.Queue) -> None:
    socks = [open_conn(port, f"bench-{qos}-{wid}-{c}-{os.getpid()}") for c in range(conns)]
    payload = os.urandom(PAYLOAD)
    topics = [f"bench/w{wid}/m{c}".encode() for c in range(conns)]
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    latencies: list[float] = []
    done = 0
    if qos == 0:
        chunk = 256
        packets = [publish_packet(t, payload, 0) * chunk for t in topics]
        sent = [0] * conns
        while min(sent) < per_conn and time.perf_counter() < deadline:
            for i, s in enumerate(socks):
                if sent[i] < per_conn:
                    n = min(chunk, per_conn - sent[i])
                    s.sendall(packets[i] if n == chunk else packets[i][: n * (len(packets[i]) // chunk)])
                    sent[i] += n
        for s in socks:
            s.sendall(b"\xc0\x00")  # PINGREQ: its PINGRESP comes after every PUBLISH before it
        for s in socks:
            s.settimeout(max(1.0, deadline - time.perf_counter()))
            buf = b""
            while not buf.endswith(b"\xd0\x00"):
                data = s.recv(65536)
                if not data:
                    break
                buf += data
        done = sum(sent)
    else:
        head = [bytes([0x32]) + _rl(2 + len(t) + 2 + PAYLOAD) + _str(t) for t in topics]
        sel = selectors.DefaultSelector()
        state = []

        def fill(s: socket.socket, st: dict) -> None:
            # Top the window up right away (a blocking write of at most `window` packets): no
            # busy polling for writability, so the generator stays cheap.
            room = min(window - (st["sent"] - st["acked"]), per_conn - st["sent"])
            if room <= 0:
                return
            now = time.perf_counter()
            parts = []
            for _ in range(room):
                pid = st["sent"] % 65535 + 1
                st["times"][pid] = now
                parts.append(head[st["i"]] + struct.pack(">H", pid) + payload)
                st["sent"] += 1
            s.setblocking(True)
            s.sendall(b"".join(parts))
            s.setblocking(False)

        for i, s in enumerate(socks):
            st = {"i": i, "sent": 0, "acked": 0, "times": [0.0] * 65536, "buf": b""}
            state.append(st)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, st)
            fill(s, st)
        while sum(st["acked"] for st in state) < per_conn * conns and time.perf_counter() < deadline:
            for key, _ in sel.select(timeout=0.5):
                st = key.data
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionError("broker closed the connection")
                buf = st["buf"] + data
                now = time.perf_counter()
                n = len(buf) // 4
                for k in range(n):
                    pid = (buf[4 * k + 2] << 8) | buf[4 * k + 3]
                    latencies.append(now - st["times"][pid])
                st["acked"] += n
                st["buf"] = buf[4 * n:]
                if st["sent"] - st["acked"] <= window // 2:  # refill in halves: fewer, larger writes
                    fill(s, st)
        done = sum(st["acked"] for st in state)
    elapsed = time.perf_counter() - t0
    for s in socks:
        s.close()
    out.put((done, elapsed, latencies[::max(1, len(latencies) // 20000)]))


def run_load(port: int, qos: int, args) -> dict:
    per_conn = args.messages // (args.procs * args.conns)
    q: mp.Queue = mp.Queue()
    start_at = time.time() + 1.0
    deadline = time.perf_counter() + 1.0 + args.timeout
    procs = [mp.Process(target=worker, args=(port, w, args.conns, per_conn, qos, args.window, start_at, deadline, q))
             for w in range(args.procs)]
    for p in procs:
        p.start()
    results = [q.get(timeout=args.timeout + 30) for _ in procs]
    for p in procs:
        p.join(10)
    total = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    lats = sorted(x for r in results for x in r[2])
    res = {"messages": total, "seconds": wall, "rate": total / wall if wall else 0.0}
    if lats:
        res["p50_ms"] = lats[len(lats) // 2] * 1000
        res["p99_ms"] = lats[int(len(lats) * 0.99)] * 1000
    return res


def wal_fsyncs(app: ApplianceProcess) -> int:
    """The appliance's storage fsync counter, from its admin /metrics (Prometheus text)."""
    import urllib.request
    with urllib.request.urlopen(f"{app.admin_url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("millstream_storage_fsyncs_total"):
                return int(float(line.split()[-1]))
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# What a user after low latency would set: a Fetch returns as soon as there is one byte (the broker
# parks it until then, at most 100 ms). Printed with the result.
E2E_CONSUMER = {"fetch.wait.max.ms": 100, "fetch.min.bytes": 1, "enable.auto.commit": False}


def _e2e_consumer(bootstrap: str, total: int, seconds: float, ready, out: mp.Queue) -> None:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e", **E2E_CONSUMER})
    c.assign([TopicPartition("bench.e2e", 0, 1)])
    c.poll(0.5)
    ready.set()
    gc.disable()  # see end_to_end
    lat: list[float] = []
    deadline = time.time() + seconds + 20
    while len(lat) < total and time.time() < deadline:
        m = c.poll(0.05)
        if m is None or m.error():
            continue
        sent = struct.unpack(">d", m.value()[:8])[0]
        lat.append((sent, time.time() - sent))
    c.close()
    out.put(lat)


def end_to_end(app: ApplianceProcess, rate: int, seconds: float) -> dict:
    """Paced QoS 1 publishes stamped with their send time; a confluent-kafka consumer in another
    process reads the mapped topic and measures publish -> delivery. Also the CPU of this
    process (the paced publisher and its PUBACK reader) and of the consumer process, which share
    the machine's cores with the appliance."""
    import resource

    def cpu(who: int) -> float:
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    self0 = cpu(resource.RUSAGE_SELF)
    sock = open_conn(app.mqtt_port, "e2e-pub")
    sock.sendall(publish_packet(b"e2e/warmup", b"0" * 8, 1, 1))  # creates the topic
    sock.recv(4)
    total = int(rate * seconds)
    ready = mp.Event()
    q: mp.Queue = mp.Queue()
    consumer = mp.Process(target=_e2e_consumer, args=(app.bootstrap, total, seconds, ready, q))
    consumer.start()
    ready.wait(20)
    time.sleep(0.5)
    acks = _PubackTimer()
    filler = b"x" * (PAYLOAD - 8)
    # The load generator's own garbage collections (a full one took 12-38 ms in this process
    # and in the consumer's) were counted as the broker's latency; these loops make no cycles.
    # PUBACKs are read by this same thread while it waits for each send's time: a reader thread
    # needed the GIL back from this loop first, which delayed its timestamps by up to 5 ms.
    gc.disable()
    machine0 = _machine_ticks()
    t0 = time.perf_counter()
    for i in range(total):
        target = t0 + i / rate
        while (d := target - time.perf_counter()) > 0:
            if select.select([sock], [], [], d)[0]:
                acks.read(sock)
        acks.sent_at[i % 65535 + 1] = time.perf_counter()
        sock.sendall(publish_packet(b"e2e/m", struct.pack(">d", time.time()) + filler, 1, i % 65535 + 1))
    machine = _machine_share(machine0, _machine_ticks())
    deadline = time.perf_counter() + 15
    while acks.got < total and time.perf_counter() < deadline:
        if select.select([sock], [], [], 0.1)[0] and not acks.read(sock):
            break
    gc.enable()
    puback = acks.delays
    publisher_cpu = cpu(resource.RUSAGE_SELF) - self0
    children0 = cpu(resource.RUSAGE_CHILDREN)
    got = q.get(timeout=seconds + 40)
    lat = sorted(x for _, x in got)
    windows = _window_p99s(got, 10.0) if seconds >= 20 else []
    consumer.join(10)
    consumer_cpu = cpu(resource.RUSAGE_CHILDREN) - children0  # the consumer, reaped just now
    sock.close()
    if not lat:
        return {"received": 0}
    puback.sort()
    return {"received": len(lat), "sent": total, "p50_ms": lat[len(lat) // 2] * 1000,
            "puback_ms": [puback[int(len(puback) * q)] * 1000 for q in (0.5, 0.99)] if puback else [],
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "max_ms": lat[-1] * 1000, "windows_p99_ms": windows,
            "publisher_us": publisher_cpu / total * 1e6, "consumer_us": consumer_cpu / total * 1e6, "machine": machine}


def _machine_ticks() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _machine_share(before: list[int], after: list[int]) -> tuple[float, float]:
    """(busy, steal) as fractions of all CPUs' time between two /proc/stat readings: how much of
    the machine the run had, and how much the hypervisor took away from it."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d[:8]) or 1  # user nice system idle iowait irq softirq steal
    return (d[0] + d[1] + d[2] + d[5] + d[6]) / total, d[7] / total


def disk_stalls(directory: Path, seconds: float) -> str:
    """The disk alone, the way the WAL uses it at this rate: ~1,000 small appends a second, each
    followed by fsync, for `seconds`. Stalls here bound the end-to-end tail whatever the broker does."""
    path = directory / "stall-probe.bin"
    buf = os.urandom(1200)
    lat: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            os.write(fd, buf)
            os.fsync(fd)
            lat.append(time.perf_counter() - t)
            time.sleep(0.0008)
    finally:
        os.close(fd)
        path.unlink()
    lat.sort()
    return (f"disk alone, {len(lat)} x (1200-byte append + fsync) over {seconds:g} s: p50 {lat[len(lat) // 2] * 1000:.2f} ms, "
            f"p99 {lat[int(len(lat) * 0.99)] * 1000:.2f} ms, max {lat[-1] * 1000:.1f} ms, "
            f"{sum(1 for x in lat if x > 0.005)} fsyncs over 5 ms")


def _window_p99s(samples: list[tuple[float, float]], width: float) -> list[float]:
    """p99 in ms per `width` seconds of send time: a long run shows whether its tail comes from
    a few bad moments (disk stalls) or from everywhere."""
    if not samples:
        return []
    t0 = min(t for t, _ in samples)
    buckets: dict[int, list[float]] = {}
    for t, x in samples:
        buckets.setdefault(int((t - t0) // width), []).append(x)
    return [sorted(b)[int(len(b) * 0.99)] * 1000 for _, b in sorted(buckets.items()) if len(b) >= 100]


class _PubackTimer:
    """Each PUBACK's delay after its publish (4-byte packets, packet id in the last two): says
    whether a slow delivery was slow to become durable or slow on the consumer's side."""

    def __init__(self) -> None:
        self.sent_at = [0.0] * 65536  # by packet id: when that publish went out
        self.delays: list[float] = []
        self.got = 0
        self._pending = b""

    def read(self, sock: socket.socket) -> bool:
        """Take the PUBACKs that have arrived (the socket is readable); False at end of stream."""
        data = sock.recv(65536)
        if not data:
            return False
        now = time.perf_counter()
        pending = self._pending + data
        whole = len(pending) // 4 * 4
        sent_at = self.sent_at
        self.delays.extend(now - sent_at[int.from_bytes(pending[k + 2 : k + 4], "big")] for k in range(0, whole, 4))
        self.got += whole // 4
        self._pending = pending[whole:]
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000, help="per broker and QoS")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--conns", type=int, default=4, help="connections per process")
    ap.add_argument("--window", type=int, default=128, help="QoS 1 messages in flight per connection")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--e2e-rate", type=int, default=5000)
    ap.add_argument("--e2e-seconds", type=float, default=10)
    ap.add_argument("--only", default="qos0,qos1,e2e",
                    help="comma-separated parts to run: qos0, qos1, e2e (e.g. --only e2e)")
    ap.add_argument("--no-mosquitto", action="store_true", help="skip the Mosquitto comparison")
    ap.add_argument("--disk-probe-seconds", type=float, default=10,
                    help="after the end-to-end run, time plain small appends + fsync on the same disk (0: skip)")
    ap.add_argument("--storage", action="append", default=[], metavar="KEY=VALUE",
                    help="a [storage] setting for the appliance, as TOML (e.g. fsync=false, to see what the "
                         "disk costs); repeatable")
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternating Millstream/Mosquitto runs per QoS; the median ratio's run is reported")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="millstream-mqtt-bench-"))
    (work / "site.toml").write_text(MAPPING + "".join(f"{line}\n" for line in ["[storage]", *args.storage] if args.storage))
    mport = free_port()
    (work / "mosquitto.conf").write_text(f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                         "max_inflight_messages 0\nmax_queued_messages 0\n")
    mosq = None if args.no_mosquitto else subprocess.Popen(
        ["mosquitto", "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = ApplianceProcess(work / "data", config=work / "site.toml").start()
    try:
        time.sleep(0.5)
        rows = []
        print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
        for qos in (0, 1):
            if f"qos{qos}" not in parts:
                continue
            pairs = []  # alternating runs: this machine's rates swing by a third from run to run
            for _ in range(args.repeat):
                cpu0 = cpu_seconds(app.proc.pid)
                ms = run_load(app.mqtt_port, qos, args)
                cpu = cpu_seconds(app.proc.pid) - cpu0
                mo = run_load(mport, qos, args) if mosq is not None else None
                pairs.append((ms, mo, cpu))
            pairs.sort(key=lambda p: p[0]["rate"] / p[1]["rate"] if p[1] else p[0]["rate"])
            ms, mo, cpu = pairs[len(pairs) // 2]  # the median pair
            rows.append((qos, ms, mo, cpu))
            if len(pairs) > 1:
                ratios = ", ".join(f"{a['rate'] / b['rate']:.2f}" if b else f"{a['rate']:,.0f} msg/s" for a, b, _ in pairs)
                print(f"QoS {qos}, {len(pairs)} alternating runs (sorted): {ratios}; the median run below")
        print(f"MQTT ingest, {args.procs} procs x {args.conns} conns, {PAYLOAD}-byte payloads, "
              f"QoS 1 window {args.window}/conn, {os.cpu_count()} CPUs")
        for qos, ms, mo, cpu in rows:
            line = (f"QoS {qos}: millstream {ms['rate']:,.0f} msg/s ({ms['messages']} msgs), "
                    f"millstream CPU {cpu / max(ms['messages'], 1) * 100_000:.2f} s/100k "
                    f"({cpu / max(ms['messages'], 1) * 1e6:.1f} us/msg)")
            if mo is not None:
                line += f"; mosquitto {mo['rate']:,.0f} msg/s, ratio {ms['rate'] / mo['rate']:.2f}"
            if qos == 1:
                line += f"; PUBACK p50/p99 millstream {ms['p50_ms']:.1f}/{ms['p99_ms']:.1f} ms"
                if mo is not None:
                    line += f", mosquitto {mo['p50_ms']:.1f}/{mo['p99_ms']:.1f} ms"
            print(line)
        if "e2e" in parts:
            fsyncs0, cpu0 = wal_fsyncs(app), cpu_seconds(app.proc.pid)
            e2e = end_to_end(app, args.e2e_rate, args.e2e_seconds)
            cpu = cpu_seconds(app.proc.pid) - cpu0
            fsyncs = wal_fsyncs(app) - fsyncs0
            print(f"end to end MQTT QoS 1 -> Kafka consumer at {args.e2e_rate} msg/s for {args.e2e_seconds:.0f}s: "
                  + (f"{e2e['received']}/{e2e['sent']} received, p50 {e2e['p50_ms']:.1f} ms, "
                     f"p99 {e2e['p99_ms']:.1f} ms, max {e2e['max_ms']:.1f} ms" if e2e.get("received")
                     else "nothing received")
                  + f"; millstream CPU {cpu / max(e2e.get('sent', 1), 1) * 1e6:.1f} us/msg (incl. the consumer's fetches)"
                  + (f", {fsyncs} fsyncs ({fsyncs / max(e2e.get('sent', 1), 1):.2f} per msg, "
                     f"{cpu / fsyncs * 1e6:.0f} us CPU per fsync)" if fsyncs else ", no fsyncs (fsync is off)")
                  + (f"; on the same cores: publisher {e2e['publisher_us']:.0f} us/msg, consumer process "
                     f"{e2e['consumer_us']:.0f} us/msg" if e2e.get("received") else ""))
            if e2e.get("puback_ms"):
                print("  PUBACK after publish p50 {:.1f} ms, p99 {:.1f} ms".format(*e2e["puback_ms"])
                      + (" (durable in the WAL)" if fsyncs else " (NOT durable: fsync is off)"))
            if e2e.get("machine"):
                busy, steal = e2e["machine"]
                print(f"  the machine while publishing: {busy:.0%} of its {os.cpu_count()} CPUs busy, "
                      f"{steal:.1%} stolen by the hypervisor")
            if e2e.get("windows_p99_ms"):
                print("  p99 per 10 s of the run: " + ", ".join(f"{x:.1f}" for x in e2e["windows_p99_ms"]) + " ms")
            if args.disk_probe_seconds:
                print("  " + disk_stalls(work, args.disk_probe_seconds))
            print(f"  consumer: confluent-kafka (librdkafka) {E2E_CONSUMER}")
        print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    finally:
        app.kill()
        if mosq is not None:
            mosq.kill()
            mosq.wait(5)


if __name__ == "__main__":
    main()
