"""A tiny raw Kafka client on a socket, for seeing exact error codes and sending hostile bytes."""

from __future__ import annotations

import socket
import struct
from typing import Any

from appliance.kafka import records
from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def roundtrip(s: socket.socket, api_key: int, version: int, req: Any, correlation_id: int = 7) -> Any:
    s.sendall(codec.encode_request(api_key, version, correlation_id, req))
    size = struct.unpack(">i", recv_exact(s, 4))[0]
    corr, resp = codec.decode_response(api_key, version, recv_exact(s, size))
    assert corr == correlation_id
    return resp


def api_versions_ok(port: int, timeout: float = 10.0) -> bool:
    with connect(port, timeout) as s:
        resp = roundtrip(s, 18, 3, m.ApiVersionsRequest(client_software_name="faults", client_software_version="1"))
        return resp.error_code == 0


def produce_request(topic: str, partition: int, values: list[bytes], acks: int = -1) -> m.ProduceRequest:
    P = m.ProduceRequest
    batch = records.build_batch([(None, v, []) for v in values], timestamp_ms=1)
    return P(acks=acks, timeout_ms=10_000, topic_data=[P.TopicProduceData(name=topic, partition_data=[
        P.TopicProduceData.PartitionProduceData(index=partition, records=batch)])])


def produce_error(port: int, topic: str, partition: int, values: list[bytes]) -> int:
    """Error code of one acks=all Produce (v8) of `values` as one batch."""
    with connect(port, 30) as s:
        resp = roundtrip(s, 0, 8, produce_request(topic, partition, values))
        return resp.responses[0].partition_responses[0].error_code


def fetch(port: int, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20) -> tuple[int, bytes]:
    """(error code, records bytes) of one Fetch (v12, by topic name) of one partition."""
    F = m.FetchRequest
    req = F(max_wait_ms=0, min_bytes=0, max_bytes=max_bytes, topics=[F.FetchTopic(topic=topic, partitions=[
        F.FetchTopic.FetchPartition(partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes)])])
    with connect(port, 30) as s:
        resp = roundtrip(s, 1, 12, req)
    part = resp.responses[0].partitions[0]
    records_ = part.records or b""
    if isinstance(records_, list):
        records_ = b"".join(records_)
    return part.error_code, bytes(records_)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")
