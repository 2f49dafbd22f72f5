"""Micro-benchmark of the Kafka codec's hot paths.

Decodes a 3-partition Produce request (v9, flexible) and encodes a 3-partition Fetch response
(v12), N times each (best of REPEATS runs), and prints microseconds per operation.

Usage: python bench/protocol_codec.py [N [REPEATS]]
"""

from __future__ import annotations

import sys
import time

from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m

BATCH = b"\x00" * 61 + b"r" * 1024  # a 1 KiB record batch stand-in (the codec never looks inside)


def produce_frame(version: int = 9) -> bytes:
    P = m.ProduceRequest
    req = P(acks=-1, timeout_ms=30_000, topic_data=[P.TopicProduceData(name="plant1.line3.telemetry", partition_data=[
        P.TopicProduceData.PartitionProduceData(index=i, records=BATCH) for i in range(3)])])
    return codec.encode_request(0, version, 1, req, client_id="rdkafka")[4:]


def fetch_response() -> m.FetchResponse:
    F = m.FetchResponse
    PD = F.FetchableTopicResponse.PartitionData
    return F(responses=[F.FetchableTopicResponse(topic="plant1.line3.telemetry", partitions=[
        PD(partition_index=i, high_watermark=1_000_000, last_stable_offset=1_000_000, log_start_offset=0,
           records=[BATCH, BATCH]) for i in range(3)])])


def bench(label: str, fn, n: int, repeats: int = 5) -> float:
    """Best of `repeats` runs of n calls: the least disturbed by other load on the machine."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    per_op = best / n * 1e6
    print(f"{label:<52} {per_op:8.2f} us/op")
    return per_op


def main(n: int, repeats: int) -> None:
    frame = produce_frame()
    resp = fetch_response()
    bench("decode_request Produce v9, 3 partitions", lambda: codec.decode_request(frame), n, repeats)
    bench("encode_response Fetch v12, 3 partitions x 2 batches", lambda: codec.encode_response(1, 12, 7, resp), n, repeats)
    bench("encode_response_parts Fetch v12 (no join)", lambda: codec.encode_response_parts(1, 12, 7, resp), n, repeats)
    frame3 = produce_frame(3)
    bench("decode_request Produce v3 (non-flexible)", lambda: codec.decode_request(frame3), n, repeats)
    bench("encode_response Fetch v4 (non-flexible)", lambda: codec.encode_response(1, 4, 7, resp), n, repeats)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
