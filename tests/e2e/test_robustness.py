"""Malformed frames close only their own connection; the broker and other clients carry on."""

from __future__ import annotations

import socket
import struct

import pytest
from confluent_kafka import Producer

from appliance.kafka import records
from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m


def _connect(app) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", app.kafka_port), timeout=10)
    return s


def _closed_by_broker(s: socket.socket) -> bool:
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True


def _roundtrip(s: socket.socket, api_key: int, version: int, req) -> object:
    s.sendall(codec.encode_request(api_key, version, 7, req))
    size = struct.unpack(">i", _recv_exact(s, 4))[0]
    corr, resp = codec.decode_response(api_key, version, _recv_exact(s, size))
    assert corr == 7
    return resp


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def _healthy_produce(app, value: bytes) -> None:
    p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all"})
    errors = []
    p.produce("healthy", value=value, on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(20) == 0 and not errors


BAD_FRAMES = {
    "negative length": struct.pack(">i", -5),
    "length over the limit": struct.pack(">i", 200 << 20) + b"x" * 10,
    "unknown api key": struct.pack(">ihhi", 10, 999, 0, 1) + b"\x00\x00",
    "truncated request": struct.pack(">i", 12) + struct.pack(">hhi", 3, 1, 1) + b"\x00\x05ab",
    "garbage body": struct.pack(">i", 20) + struct.pack(">hhi", 0, 7, 1) + b"\xff" * 12,
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_malformed_frame_closes_only_that_connection(appliance, name):
    _healthy_produce(appliance, b"before")
    bystander = _connect(appliance)
    bad = _connect(appliance)
    bad.sendall(BAD_FRAMES[name])
    assert _closed_by_broker(bad), f"{name}: connection should be closed"
    # The other open connection still gets answers, and a fresh client still produces.
    resp = _roundtrip(bystander, 18, 3, m.ApiVersionsRequest(client_software_name="t", client_software_version="1"))
    assert resp.error_code == 0
    _healthy_produce(appliance, b"after")
    assert "connection_rejected" in appliance.log_text()


def test_bad_crc_fails_only_that_partition(appliance):
    _healthy_produce(appliance, b"x")  # creates topic "healthy"
    s = _connect(appliance)
    good = records.build_batch([(b"k", b"good", [])], timestamp_ms=1)
    bad = bytearray(records.build_batch([(b"k", b"bad!", [])], timestamp_ms=1))
    bad[-1] ^= 0xFF  # flip a payload byte: CRC no longer matches
    P = m.ProduceRequest
    req = P(acks=-1, timeout_ms=5000, topic_data=[
        P.TopicProduceData(name="healthy", partition_data=[P.TopicProduceData.PartitionProduceData(index=0, records=bytes(bad))]),
        P.TopicProduceData(name="nosuchtopic", partition_data=[P.TopicProduceData.PartitionProduceData(index=0, records=good)]),
    ])
    resp = _roundtrip(s, 0, 8, req)
    codes = {t.name: t.partition_responses[0].error_code for t in resp.responses}
    assert codes == {"healthy": 2, "nosuchtopic": 3}  # CORRUPT_MESSAGE, UNKNOWN_TOPIC_OR_PARTITION
    # Same connection, a good batch is accepted.
    req.topic_data = req.topic_data[:1]
    req.topic_data[0].partition_data[0].records = good
    resp = _roundtrip(s, 0, 8, req)
    assert resp.responses[0].partition_responses[0].error_code == 0
    assert resp.responses[0].partition_responses[0].base_offset == 1


def test_unsupported_api_versions_version_gets_error_35_with_list(appliance):
    s = _connect(appliance)
    # ApiVersions v99: the broker answers in v0 with UNSUPPORTED_VERSION and its list.
    body = struct.pack(">hhih", 18, 99, 42, -1)
    s.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", _recv_exact(s, 4))[0]
    corr, resp = codec.decode_response(18, 0, _recv_exact(s, size))
    assert corr == 42 and resp.error_code == 35
    keys = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert keys[0][0] <= 3 <= keys[0][1] and 1 in keys and 18 in keys
