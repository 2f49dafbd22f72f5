"""Kafka message classes and codec: round trips, headers, malformed input, generated-file freshness."""

from __future__ import annotations

import importlib.util
import struct
import uuid
from pathlib import Path

import pytest

from appliance.errors import ProtocolError
from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m
from appliance.kafka.protocol.codec import (
    EncodeError,
    MalformedMessageError,
    MalformedRequestError,
    UnsupportedVersionError,
)
from tests.kafka.protocol_values import sample

REPO = Path(__file__).resolve().parents[2]
STANDALONE = (m.RequestHeader, m.ResponseHeader, m.ConsumerProtocolSubscription, m.ConsumerProtocolAssignment)
ALL_CLASSES = [c for a in m.API_KEYS.values() for c in (a.request, a.response)] + list(STANDALONE)
CASES = [(cls, v) for cls in ALL_CLASSES for v in range(cls.VERSIONS[0], cls.VERSIONS[1] + 1)]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_kafka_protocol", REPO / "packaging" / "gen_kafka_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_module_is_fresh():
    gen = _load_generator()
    specs = gen.default_specs_dir()
    if not specs.is_dir():
        pytest.fail(f"Kafka message specs missing at {specs}: cannot check messages.py freshness")
    committed = (REPO / "appliance" / "kafka" / "protocol" / "messages.py").read_text(encoding="utf-8")
    assert gen.generate(specs) == committed, "appliance/kafka/protocol/messages.py is stale: run make generate"


def test_registry_covers_the_requested_apis():
    gen = _load_generator()
    assert sorted(a.name for a in m.API_KEYS.values()) == sorted(gen.APIS)
    produce = m.API_KEYS[0]
    assert (produce.name, produce.request, produce.response) == ("Produce", m.ProduceRequest, m.ProduceResponse)
    assert (produce.min_version, produce.max_version, produce.flexible_min) == (0, 11, 9)
    assert m.API_KEYS[17].flexible_min is None  # SaslHandshake has no flexible version
    assert m.API_KEYS[18].flexible_min == 3


@pytest.mark.parametrize("cls,version", CASES, ids=[f"{c.NAME}-v{v}" for c, v in CASES])
def test_round_trip_every_message_every_version(cls, version):
    for nulls in (False, True):
        obj = sample(cls, version, nulls=nulls)
        data = codec.encode(obj, version)
        back = codec.decode(cls, version, data)
        assert back == obj, f"{cls.NAME} v{version} nulls={nulls}"
        assert codec.encode(back, version) == data
        # A memoryview input decodes the same.
        assert codec.decode(cls, version, memoryview(data)) == obj


def test_constructor_defaults_follow_the_spec():
    p = m.FetchResponse.FetchableTopicResponse.PartitionData()
    assert p.last_stable_offset == -1 and p.log_start_offset == -1 and p.preferred_read_replica == -1
    assert p.records is None and p.aborted_transactions == []  # nullable, but the spec default is empty
    assert p.current_leader == m.FetchResponse.FetchableTopicResponse.PartitionData.LeaderIdAndEpoch()
    assert p.current_leader.leader_id == -1
    req = m.ProduceRequest()
    assert req.transactional_id is None and req.topic_data == [] and req.topic_data is not m.ProduceRequest().topic_data
    assert m.FetchRequest().max_bytes == 0x7FFFFFFF
    assert m.FetchResponse.FetchableTopicResponse().topic_id == uuid.UUID(int=0)
    assert "ProduceRequest(transactional_id=None, acks=0" in repr(req)


def test_absent_fields_decode_to_defaults_and_newer_fields_are_dropped():
    resp = m.ProduceResponse(
        responses=[m.ProduceResponse.TopicProduceResponse(name="t", partition_responses=[
            m.ProduceResponse.TopicProduceResponse.PartitionProduceResponse(index=1, base_offset=5, log_start_offset=3)
        ])],
        throttle_time_ms=9,
    )
    back = codec.decode(m.ProduceResponse, 0, codec.encode(resp, 0))
    part = back.responses[0].partition_responses[0]
    assert (part.index, part.base_offset, part.log_start_offset) == (1, 5, -1)
    assert back.throttle_time_ms == 0


def test_unknown_tagged_fields_are_skipped():
    body = codec.encode(m.HeartbeatResponse(throttle_time_ms=1, error_code=2), 4)
    assert body.endswith(b"\x00")
    # Replace the empty tag buffer with two unknown tags (7 and 300) carrying opaque bytes.
    tags = b"\x02" + b"\x07\x03abc" + b"\xac\x02\x01z"
    back = codec.decode(m.HeartbeatResponse, 4, body[:-1] + tags)
    assert back == m.HeartbeatResponse(throttle_time_ms=1, error_code=2)


def test_tagged_fields_are_written_only_when_not_default():
    P = m.FetchResponse.FetchableTopicResponse.PartitionData
    base = m.FetchResponse(responses=[m.FetchResponse.FetchableTopicResponse(topic="t", partitions=[P(partition_index=0)])])
    with_leader = m.FetchResponse(responses=[m.FetchResponse.FetchableTopicResponse(topic="t", partitions=[
        P(partition_index=0, current_leader=P.LeaderIdAndEpoch(leader_id=1, leader_epoch=4))])])
    a, b = codec.encode(base, 12), codec.encode(with_leader, 12)
    # tag 1, size 9: two int32 and the struct's own empty tag buffer
    assert len(b) - len(a) == 1 + 1 + 9
    assert b"\x01\x01\x09\x00\x00\x00\x01\x00\x00\x00\x04\x00" in b
    assert codec.decode(m.FetchResponse, 12, b) == with_leader


def test_records_encoder_accepts_chunks_and_decodes_zero_copy():
    P = m.FetchResponse.FetchableTopicResponse.PartitionData
    chunks = [b"first-batch", memoryview(b"second-batch"), bytearray(b"third")]
    for version in (4, 12):
        resp = m.FetchResponse(responses=[m.FetchResponse.FetchableTopicResponse(
            topic="t", partitions=[P(partition_index=0, records=chunks)])])
        frame = codec.encode_response(1, version, 42, resp)
        corr, back = codec.decode_response(1, version, frame[4:])
        records = back.responses[0].partitions[0].records
        assert corr == 42 and isinstance(records, memoryview)
        assert bytes(records) == b"first-batchsecond-batchthird"
        parts = codec.encode_response_parts(1, version, 42, resp)
        assert b"".join(parts) == frame and any(p is chunks[1] for p in parts)


def test_uuid_accepts_raw_bytes_and_rejects_wrong_length():
    T = m.MetadataRequest.MetadataRequestTopic
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    raw = codec.encode(m.MetadataRequest(topics=[T(topic_id=u.bytes, name="x")]), 12)
    assert codec.decode(m.MetadataRequest, 12, raw).topics[0].topic_id == u
    with pytest.raises(EncodeError):
        codec.encode(m.MetadataRequest(topics=[T(topic_id=b"short")]), 12)


def test_encode_errors_are_wrapped():
    with pytest.raises(EncodeError, match="ProduceRequest v3"):
        codec.encode(m.ProduceRequest(acks=1 << 20), 3)
    with pytest.raises(EncodeError):
        codec.encode(m.ProduceRequest(topic_data=None), 3)  # not nullable
    with pytest.raises(EncodeError):
        codec.encode(m.ProduceRequest(transactional_id=None, topic_data=[m.ProduceRequest.TopicProduceData(name=None)]), 3)
    with pytest.raises(EncodeError):
        codec.encode(m.SaslAuthenticateRequest(auth_bytes="text, not bytes"), 1)
    with pytest.raises(EncodeError):
        codec.encode_response(36, 1, 1, m.SaslAuthenticateResponse(auth_bytes="text"))
    with pytest.raises(UnsupportedVersionError):
        codec.encode(m.ProduceRequest(), 12)


# ---- headers ---------------------------------------------------------------------------------

def test_request_header_v1_and_v2_layout():
    req = m.HeartbeatRequest(group_id="g", generation_id=3, member_id="m")
    v3 = codec.encode_request(12, 3, 77, req, client_id="cli")
    assert v3[4:17] == struct.pack(">hhih", 12, 3, 77, 3) + b"cli"
    assert v3[17:19] == b"\x00\x01"  # non-compact group_id length 1 (header v1)
    v4 = codec.encode_request(12, 4, 77, req, client_id="cli")
    # header v2: client_id stays a non-compact string, then an empty tag buffer
    assert v4[4:18] == struct.pack(">hhih", 12, 4, 77, 3) + b"cli\x00"
    assert v4[18:19] == b"\x02"  # compact group_id length 1+1
    for frame, version in ((v3, 3), (v4, 4)):
        assert struct.unpack(">i", frame[:4])[0] == len(frame) - 4
        header, body = codec.decode_request(frame[4:])
        assert header == m.RequestHeader(request_api_key=12, request_api_version=version, correlation_id=77, client_id="cli")
        assert body == req
        assert codec.peek_header(frame[4:]) == (12, version, 77)
    header, _ = codec.decode_request(codec.encode_request(12, 4, 1, req, client_id=None)[4:])
    assert header.client_id is None


def test_response_header_versions():
    resp = m.HeartbeatResponse(error_code=27)
    assert codec.encode_response(12, 3, 5, resp) == struct.pack(">iiih", 10, 5, 0, 27)
    assert codec.encode_response(12, 4, 5, resp) == struct.pack(">iibihb", 12, 5, 0, 0, 27, 0)
    assert codec.response_header_version(12, 4) == 1
    # ApiVersions responses keep header v0 even at flexible versions.
    api_resp = m.ApiVersionsResponse(error_code=0, api_keys=[m.ApiVersionsResponse.ApiVersion(api_key=0, min_version=0, max_version=9)])
    frame = codec.encode_response(18, 3, 9, api_resp)
    assert frame[4:8] == struct.pack(">i", 9) and frame[8:10] == b"\x00\x00"  # error code directly after
    assert codec.decode_response(18, 3, frame[4:]) == (9, api_resp)
    assert codec.response_header_version(18, 3) == 0
    assert codec.request_header_version(18, 3) == 2 and codec.request_header_version(18, 2) == 1


def test_encode_response_rejects_the_wrong_class():
    with pytest.raises(EncodeError):
        codec.encode_response(12, 0, 1, m.HeartbeatRequest())


# ---- malformed input -------------------------------------------------------------------------

def _produce_frame(version: int) -> bytes:
    req = m.ProduceRequest(acks=-1, timeout_ms=5, topic_data=[m.ProduceRequest.TopicProduceData(
        name="topic", partition_data=[m.ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=b"x" * 70)])])
    return codec.encode_request(0, version, 123, req)[4:]


@pytest.mark.parametrize("version", [3, 9])
def test_every_truncation_raises_malformed_request(version):
    frame = _produce_frame(version)
    for cut in range(8, len(frame)):
        with pytest.raises(MalformedRequestError) as info:
            codec.decode_request(frame[:cut])
        assert info.value.correlation_id == 123 and info.value.api_key == 0
        assert isinstance(info.value, ProtocolError)
    for cut in range(0, 8):
        with pytest.raises(MalformedRequestError) as info:
            codec.decode_request(frame[:cut])
        assert info.value.correlation_id is None


def test_bad_array_lengths_raise_malformed_request():
    frame = bytearray(_produce_frame(3))
    # header(8) + client_id(2+10) + transactional_id(-1: 2) + acks(2) + timeout(4) -> topics count
    at = 8 + 2 + len("millstream") + 2 + 2 + 4
    assert struct.unpack_from(">i", frame, at)[0] == 1
    for bad in (-1, 2**31 - 1, 2):
        struct.pack_into(">i", frame, at, bad)
        with pytest.raises(MalformedRequestError):
            codec.decode_request(bytes(frame))
    flex = bytearray(_produce_frame(9))
    at = 8 + 2 + len("millstream") + 1 + 1 + 2 + 4  # + tag buffer, compact null transactional id
    assert flex[at] == 2
    flex[at : at + 1] = b"\xff\xff\xff\xff\x0f"  # uvarint 2**32-1: far longer than the frame
    with pytest.raises(MalformedRequestError):
        codec.decode_request(bytes(flex))
    flex[at : at + 5] = b"\xff" * 8  # varint never ends
    with pytest.raises(MalformedRequestError):
        codec.decode_request(bytes(flex))


def test_bad_utf8_and_nulls_raise_malformed():
    frame = bytearray(_produce_frame(3))
    name_at = frame.index(b"topic")
    frame[name_at] = 0xFF
    with pytest.raises(MalformedRequestError):
        codec.decode_request(bytes(frame))
    frame = bytearray(_produce_frame(3))
    struct.pack_into(">h", frame, name_at - 2, -1)  # null topic name: not nullable
    with pytest.raises(MalformedRequestError, match="null"):
        codec.decode_request(bytes(frame))


def test_unknown_api_key_and_bad_version_raise_unsupported_version():
    with pytest.raises(UnsupportedVersionError) as info:
        codec.decode_request(struct.pack(">hhih", 999, 0, 55, -1))
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (999, 0, 55)
    assert info.value.kafka_code == 35
    for version in (-1, 12):
        with pytest.raises(UnsupportedVersionError) as info:
            codec.decode_request(struct.pack(">hhih", 0, version, 56, -1))
        assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (0, version, 56)
    # A future ApiVersions version: the header is readable, so the broker can answer with error 35.
    with pytest.raises(UnsupportedVersionError) as info:
        codec.decode_request(struct.pack(">hhih", 18, 9, 57, 0) + b"\x00garbage")
    assert info.value.correlation_id == 57


def test_decode_and_decode_response_wrap_errors():
    with pytest.raises(MalformedMessageError):
        codec.decode(m.MetadataResponse, 12, b"\x00\x00")
    with pytest.raises(codec.MalformedResponseError) as info:
        codec.decode_response(3, 12, struct.pack(">i", 4) + b"\x00\x05")
    assert info.value.correlation_id == 4
    # A tagged field whose declared size disagrees with its content.
    body = codec.encode(m.FetchResponse(responses=[]), 16)[:-1] + b"\x01\x00\x01\x05"  # tag 0 NodeEndpoints, size 1
    with pytest.raises(MalformedMessageError):
        codec.decode(m.FetchResponse, 16, body)
    # The same tag is unknown (and skipped) at v12.
    assert codec.decode(m.FetchResponse, 12, body) == m.FetchResponse()


def test_error_codes_match_kafka_and_the_error_families():
    from appliance import errors
    from appliance.kafka.error_codes import ErrorCode

    assert ErrorCode.NONE == 0 and ErrorCode.UNSUPPORTED_VERSION == 35 and ErrorCode.INVALID_REQUEST == 42
    assert ErrorCode(6).name == "NOT_LEADER_OR_FOLLOWER" and ErrorCode(120).name == "TRANSACTION_ABORTABLE"
    assert sorted(ErrorCode) == list(range(-1, 121))  # dense: no gaps, no duplicates
    assert UnsupportedVersionError.kafka_code == ErrorCode.UNSUPPORTED_VERSION
    assert MalformedRequestError.kafka_code == ErrorCode.INVALID_REQUEST
    assert errors.StorageError.kafka_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert errors.OutOfOrderSequenceError.kafka_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert errors.UnknownProducerIdError.kafka_code == ErrorCode.UNKNOWN_PRODUCER_ID


def test_generator_strips_comments_only_outside_strings(tmp_path, monkeypatch):
    gen = _load_generator()
    text = '{"a": "http://x//y", // comment\n "b": 1} // trailing\n'
    assert gen.strip_comments(text) == '{"a": "http://x//y", \n "b": 1} \n'
    monkeypatch.setenv("MILLSTREAM_KAFKA_SPECS", str(tmp_path / "missing"))
    assert gen.default_specs_dir() == tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="MILLSTREAM_KAFKA_SPECS"):
        gen.generate()
