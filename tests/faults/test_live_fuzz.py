"""A live broker hit with random and mutated frames keeps serving its well-behaved clients.

Several hostile connections send a mix of mutated valid requests (every API key and version),
random bodies behind real headers, lying size prefixes (negative, zero, oversize, short) and raw
garbage, reconnecting whenever the broker hangs up. Meanwhile an idempotent producer keeps
producing and a probe measures ApiVersions round trips. At the end: the process is up, the
producer's records are all stored exactly once in order, the probe never waited long, and the log
shows no internal error (a handler or connection failing on input is a bug, not a rejection).
"""

from __future__ import annotations

import random
import struct
import threading
import time

import trio

from tests.e2e.test_confluent_kafka import create_topic
from tests.faults import kafka_wire as wire
from tests.faults.load import IdempotentLoad, read_partitions, verify
from tests.faults.mutate import corpus, frame_with_prefix, mutate
from tests.faults.scale import knob, percentile, report, seed

# APIs that change durable state on purpose (create/delete topics, partitions, records, groups,
# configs): a client allowed to call them can legitimately make the broker do large amounts of
# work (CreateTopics with 30000 partitions is valid). Limiting that is the rules' job (admin
# operations per conduit), not the decoder's, so the fuzzer leaves them out.
STATEFUL_ADMIN = {19, 20, 21, 33, 37, 42, 44, 47}
HOSTILE_TASKS = 6
CONNECTION_BUDGET_S = 2.0  # a hostile connection is dropped and reopened after this long


def fuzz_corpus() -> list[bytes]:
    return [f for f in corpus() if struct.unpack_from(">h", f)[0] not in STATEFUL_ADMIN]


def hostile_frame(rng: random.Random, frames: list[bytes], max_request: int) -> bytes:
    roll = rng.random()
    if roll < 0.65:
        return frame_with_prefix(mutate(rng.choice(frames), rng))
    if roll < 0.75:
        return frame_with_prefix(rng.choice(frames))
    if roll < 0.87:
        api = struct.unpack_from(">h", rng.choice(frames))[0]
        body = struct.pack(">hhi", api, rng.randint(-1, 20), rng.getrandbits(31)) + rng.randbytes(rng.randint(0, 200))
        return frame_with_prefix(body)
    if roll < 0.90:
        return struct.pack(">i", 0)  # a zero-length frame
    if roll < 0.93:
        return struct.pack(">i", -rng.randint(1, 2**31))
    if roll < 0.96:
        return struct.pack(">i", max_request + rng.randint(1, 1 << 20)) + rng.randbytes(64)
    if roll < 0.98:
        return struct.pack(">i", rng.randint(100, 5000)) + rng.randbytes(rng.randint(0, 99))  # then silence
    return rng.randbytes(rng.randint(1, 300))


class Probe:
    """ApiVersions round trips on fresh connections, every 0.2 s, from a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            started = time.monotonic()
            try:
                assert wire.api_versions_ok(self.port, timeout=10)
            except Exception as e:  # any failure is what the test reports
                self.failures.append(repr(e))
            self.latencies.append(time.monotonic() - started)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)


async def _drain(stream: trio.SocketStream, counts: dict[str, int], scope: trio.CancelScope) -> None:
    """Read and drop responses (so the broker never blocks on us); end the connection when it hangs up."""
    try:
        while await stream.receive_some(1 << 16):
            counts["response_chunks"] += 1
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    counts["closed_by_broker"] += 1
    scope.cancel()


async def hostile_connection_loop(port: int, rng: random.Random, frames: list[bytes], quota: list[int],
                                  counts: dict[str, int]) -> None:
    while quota[0] > 0:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            counts["connect_failures"] += 1
            await trio.sleep(0.05)
            continue
        counts["connections"] += 1
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(_drain, stream, counts, nursery.cancel_scope)
            with trio.move_on_after(CONNECTION_BUDGET_S):
                for _ in range(rng.randint(1, 40)):
                    if quota[0] <= 0:
                        break
                    quota[0] -= 1
                    counts["frames"] += 1
                    try:
                        await stream.send_all(hostile_frame(rng, frames, 100 << 20))
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        break
            nursery.cancel_scope.cancel()


async def test_live_broker_survives_hostile_frames_and_keeps_serving(make_appliance):
    total = knob("FAULTS_FUZZ_FRAMES")
    app = make_appliance().start()
    create_topic(app.bootstrap, "healthy", 2)
    frames = fuzz_corpus()
    load = IdempotentLoad(app.bootstrap, "healthy", 2, max_in_flight_records=500).start()
    quota = [total]
    counts = dict.fromkeys(["frames", "connections", "connect_failures", "closed_by_broker", "response_chunks"], 0)
    started = time.monotonic()
    with Probe(app.kafka_port) as probe:
        async with trio.open_nursery() as nursery:
            for i in range(HOSTILE_TASKS):
                nursery.start_soon(hostile_connection_loop, app.kafka_port, random.Random(seed() + i), frames,
                                   quota, counts)
        elapsed = time.monotonic() - started
        assert app.proc.poll() is None, "the broker died under hostile input"
        acked_during = load.acked_count()
    assert load.stop() == 0 and not load.errors, load.errors[:5]
    verdict = verify(load.acked, read_partitions(app.bootstrap, "healthy", 2))
    log_text = app.log_text()
    internal = [line for line in log_text.splitlines()
                if "handler_failed" in line or "connection_failed" in line or "internal error" in line]
    report("live hostile frames vs. a producing client", iterations=counts["frames"], acknowledged=verdict.acknowledged,
           lost=len(verdict.lost), duplicates=verdict.duplicates, hostile_connections=counts["connections"],
           frames_per_s=round(counts["frames"] / elapsed), probe_p50_s=round(percentile(probe.latencies, 50), 4),
           probe_max_s=round(max(probe.latencies, default=0), 4), internal_errors=len(internal))
    assert counts["frames"] >= total
    assert acked_during > 0, "the well-behaved producer made no progress during the attack"
    assert not verdict.problems(), verdict.problems()
    assert not probe.failures, probe.failures[:3]
    assert max(probe.latencies) < 2.0, f"a probe round trip took {max(probe.latencies):.2f}s"
    assert not internal, "\n".join(internal[:5])
    assert "Traceback" not in log_text
