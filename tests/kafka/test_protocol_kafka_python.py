"""Byte-level agreement with an independent implementation: kafka-python's hand-written classes.

`kafka.protocol.old` holds kafka-python's original Struct/Schema message definitions, written by
hand rather than generated from Kafka's JSON specs. For every message and version both sides
define, the same values must encode to identical bytes, and each side must decode the other's.
"""

from __future__ import annotations

import importlib

import pytest
from kafka.protocol.old.types import Array, BitField, Schema, TaggedFields  # kafka-python, test extra

from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m
from appliance.kafka.protocol.schema import DEFAULT, Message
from tests.kafka.protocol_values import sample

MODULES = (
    "api_versions", "metadata", "produce", "fetch", "group", "commit", "find_coordinator", "list_offsets",
    "init_producer_id", "sasl_handshake", "sasl_authenticate", "offset_for_leader_epoch",
    "add_offsets_to_txn", "add_partitions_to_txn", "end_txn", "txn_offset_commit", "admin",
)
# kafka-python fields named differently from the spec (its BitField for authorized operations).
RENAMES = {
    ("MetadataResponse", "authorized_operations", 0): "cluster_authorized_operations",
    ("MetadataResponse", "authorized_operations", 1): "topic_authorized_operations",
}
# kafka-python schemas that do not follow the Kafka spec, so they cannot agree with anyone.
THEIR_BUGS = {
    ("AlterConfigsResponse", 1),  # carries request fields (resources, validate_only)
    ("CreatePartitionsRequest", 0), ("CreatePartitionsRequest", 1),  # nested new_partitions struct
    ("DescribeLogDirsRequest", 0),  # partitions declared as one int32 instead of an array
}
# kafka-python classes missing FLEXIBLE_VERSION = True, so their frames carry a v1/v0 header.
THEIR_HEADER_BUGS = {("OffsetForLeaderEpochRequest", 4), ("OffsetForLeaderEpochResponse", 4)}


def _pairs():
    out = []
    for mod_name in MODULES:
        mod = importlib.import_module(f"kafka.protocol.old.{mod_name}")
        for name in sorted(dir(mod)):
            versions = getattr(mod, name)
            if not (isinstance(versions, list) and versions and hasattr(versions[0], "API_KEY")):
                continue
            ours = getattr(m, name, None)
            if ours is None:
                continue
            for theirs in versions:
                if (name, theirs.API_VERSION) not in THEIR_BUGS:
                    out.append((ours, theirs))
    return out


PAIRS = _pairs()


def _untag(obj: Message, version: int) -> Message:
    """kafka-python keeps tagged fields as raw bytes; compare with them at their defaults."""
    if isinstance(obj, m.ApiVersionsResponse):
        obj.error_code = 0  # kafka-python reads any ApiVersions error response as v0, like Kafka does
    flexible = m.API_KEYS[obj.API_KEY].flexible_min
    if flexible is not None and version >= flexible:
        _reset_tagged(obj, version)
    return obj


def _reset_tagged(obj: Message, version: int) -> None:
    for f in obj.FIELDS:
        value = getattr(obj, f.name)
        if f.tagged and f.tagged[0] <= version <= f.tagged[1]:
            default = f.default
            if default is DEFAULT:
                default = [] if f.type.startswith("[]") else f.struct()
            setattr(obj, f.name, default)
        elif f.struct is not None and isinstance(value, list):
            for item in value:
                _reset_tagged(item, version)
        elif f.struct is not None and value is not None:
            _reset_tagged(value, version)


def _to_theirs(schema, obj: Message, top: str, depth: int) -> list:
    values = []
    for name, typ in zip(schema.names, schema.fields, strict=True):
        if typ is TaggedFields:
            values.append({})
            continue
        value = getattr(obj, RENAMES.get((top, name, depth), name))
        values.append(_convert(typ, value, top, depth))
    return values


def _convert(typ, value, top: str, depth: int):
    if isinstance(typ, Array):
        if value is None:
            return None
        inner = typ.array_of
        if isinstance(inner, Schema):
            return [tuple(_to_theirs(inner, item, top, depth + 1)) for item in value]
        # kafka-python flattens one-field structs (MetadataRequest topics) to their value.
        return [_convert(inner, item.name if isinstance(item, Message) else item, top, depth + 1) for item in value]
    if typ is BitField:
        return None if value == -(2**31) else {i for i in range(32) if (value & 0xFFFFFFFF) >> i & 1}
    if isinstance(value, memoryview):
        return bytes(value)
    return value


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=[f"{t.__name__}" for _, t in PAIRS])
def test_same_bytes_as_kafka_python(ours, theirs):
    version = theirs.API_VERSION
    obj = _untag(sample(ours, version), version)
    their_obj = theirs(*_to_theirs(theirs.SCHEMA, obj, ours.NAME, 0))
    their_body = their_obj.encode()
    assert codec.encode(obj, version) == their_body
    assert codec.decode(ours, version, their_body) == obj
    assert theirs.decode(codec.encode(obj, version)).encode() == their_body


FRAME_PAIRS = [p for p in PAIRS if (p[0].NAME, p[1].API_VERSION) not in THEIR_HEADER_BUGS]


@pytest.mark.parametrize("ours,theirs", [p for p in FRAME_PAIRS if p[1].is_request()],
                         ids=[t.__name__ for _, t in FRAME_PAIRS if t.is_request()])
def test_request_frames_match_kafka_python(ours, theirs):
    version = theirs.API_VERSION
    obj = _untag(sample(ours, version), version)
    their_obj = theirs(*_to_theirs(theirs.SCHEMA, obj, ours.NAME, 0))
    their_obj.with_header(correlation_id=991, client_id="kafka-python-client")
    frame = their_obj.encode(header=True, framed=True)
    assert codec.encode_request(ours.API_KEY, version, 991, obj, client_id="kafka-python-client") == frame
    header, decoded = codec.decode_request(frame[4:])
    assert (header.request_api_key, header.request_api_version, header.correlation_id, header.client_id) == (
        ours.API_KEY, version, 991, "kafka-python-client")
    assert decoded == obj


@pytest.mark.parametrize("ours,theirs", [p for p in FRAME_PAIRS if not p[1].is_request()],
                         ids=[t.__name__ for _, t in FRAME_PAIRS if not t.is_request()])
def test_response_frames_decode_with_kafka_python(ours, theirs):
    version = theirs.API_VERSION
    obj = _untag(sample(ours, version), version)
    frame = codec.encode_response(ours.API_KEY, version, 4242, obj)
    their_obj = theirs(*_to_theirs(theirs.SCHEMA, obj, ours.NAME, 0))
    their_obj.with_header(correlation_id=4242)
    assert frame == their_obj.encode(header=True, framed=True)
    decoded = theirs.decode(frame, header=True, framed=True)
    assert decoded.header.correlation_id == 4242
    assert codec.decode_response(ours.API_KEY, version, frame[4:]) == (4242, obj)


def test_the_comparison_covers_the_core_apis():
    covered = {(t.API_KEY, t.API_VERSION, t.is_request()) for _, t in PAIRS}
    for key, versions in {18: range(5), 3: range(9), 0: range(9), 1: range(12), 11: range(6), 8: range(8)}.items():
        for v in versions:
            assert (key, v, True) in covered and (key, v, False) in covered, (key, v)


def test_unsupported_api_versions_answer_reads_as_v0_in_kafka_python():
    from kafka.protocol.old.api_versions import ApiVersionsRequest, ApiVersionsResponse

    request = ApiVersionsRequest[3](client_software_name="kp", client_software_version="3")
    request.with_header(correlation_id=5, client_id="c")
    frame = bytearray(request.encode(header=True, framed=True))
    frame[6:8] = b"\x00\x63"  # a version from the future: 99
    with pytest.raises(codec.UnsupportedVersionError) as info:
        codec.decode_request(bytes(frame[4:]))
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (18, 99, 5)
    answer = m.ApiVersionsResponse(error_code=35, api_keys=[
        m.ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)])
    reply = codec.encode_response(18, 0, info.value.correlation_id, answer)
    decoded = ApiVersionsResponse[3].decode(reply, header=True, framed=True)
    assert decoded.header.correlation_id == 5
    assert decoded.error_code == 35 and [tuple(k) for k in decoded.api_keys] == [(18, 0, 4)]
