"""Property tests for the MQTT packet decoder (PacketReader) on hostile bytes.

Whatever arrives, in whatever chunks, the reader yields packets or raises an MqttError (the
ProtocolError family the listener answers with a reason code and a close); a remaining length
that claims 256 MiB buffers only what really arrived; invalid UTF-8 in topics is malformed.
"""

from __future__ import annotations

import random
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ProtocolError
from appliance.mqtt.codec import (
    MQTT_5,
    MQTT_311,
    Auth,
    Connect,
    Disconnect,
    MqttError,
    PacketReader,
    PingReq,
    PropertyId,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    SubscriptionOptions,
    Unsubscribe,
    Will,
    encode,
)
from tests.faults.mutate import mutate
from tests.faults.scale import knob, seed

PROPERTY = settings(max_examples=knob("FAULTS_HYPOTHESIS_EXAMPLES"), deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow])
P = PropertyId


def _packets(version: int) -> list:
    v5 = version == MQTT_5
    props = {P.CONTENT_TYPE: "application/json", P.MESSAGE_EXPIRY_INTERVAL: 60,
             P.USER_PROPERTY: [("line", "3"), ("cell", "7")]} if v5 else {}
    return [
        Publish("uns/acme/plant1/line3/temp", b'{"v": 21.5}', qos=1, packet_id=7, properties=props),
        Publish("spBv1.0/line3/DDATA/edge/dev", bytes(range(256)), qos=2, packet_id=65535, retain=True),
        Publish("a/b", b"", qos=0),
        PubAck(7), PubRec(8), PubRel(8), PubComp(8),
        Subscribe(3, [("uns/#", SubscriptionOptions(qos=1)), ("spBv1.0/+/DDATA/#", SubscriptionOptions(qos=2))]),
        Unsubscribe(4, ["uns/#", "a/+/c"]),
        PingReq(),
        Disconnect(),
        *([Auth(properties={P.AUTHENTICATION_METHOD: "x", P.AUTHENTICATION_DATA: b"y"})] if v5 else []),
    ]


def _connect(version: int) -> bytes:
    will = Will("plant/status", b"offline", qos=1, retain=True)
    return encode(Connect("edge-7", version, clean_start=False, keep_alive=30, username="u", password=b"p",
                          will=will, properties={P.SESSION_EXPIRY_INTERVAL: 300} if version == MQTT_5 else {}),
                  version)


CONNECTS = {v: _connect(v) for v in (MQTT_311, MQTT_5)}
AFTER_CONNECT = [(v, encode(p, v)) for v in (MQTT_311, MQTT_5) for p in _packets(v)]


def read_all(data: bytes, version: int | None, chunks: list[int] | None = None) -> list:
    """Feed data (in the given chunk sizes) to a reader; return packets, or [] after an MqttError."""
    reader = PacketReader(max_packet_size=1 << 20, version=version)
    out = []
    pos = 0
    try:
        for size in (chunks or []) + [len(data)]:
            reader.feed(data[pos:pos + size])
            pos += size
            out.extend(reader)
    except MqttError:
        return []
    return out


def test_corpus_decodes():
    for data in CONNECTS.values():
        assert isinstance(read_all(data, None)[0], Connect)
    for v, data in AFTER_CONNECT:
        assert len(read_all(data, v)) == 1


@PROPERTY
@given(st.binary(max_size=400), st.sampled_from([None, MQTT_311, MQTT_5]))
def test_random_bytes_only_raise_mqtt_errors(data, version):
    read_all(data, version)


@PROPERTY
@given(st.integers(0, len(AFTER_CONNECT) - 1), st.integers(0, 2**32 - 1),
       st.lists(st.integers(0, 40), max_size=6))
def test_mutated_packets_in_any_chunking_only_raise_mqtt_errors(index, rng_seed, chunks):
    version, data = AFTER_CONNECT[index]
    read_all(mutate(data, random.Random(rng_seed)), version, chunks)


@PROPERTY
@given(st.sampled_from([MQTT_311, MQTT_5]), st.integers(0, 2**32 - 1))
def test_mutated_connects_only_raise_mqtt_errors(version, rng_seed):
    read_all(mutate(CONNECTS[version], random.Random(rng_seed)), None)


def test_mqtt_errors_are_protocol_errors():
    assert issubclass(MqttError, ProtocolError)


def test_huge_remaining_length_buffers_only_what_arrived():
    reader = PacketReader(version=MQTT_5)  # the default limit: the largest size MQTT can express
    tracemalloc.start()
    try:
        reader.feed(b"\x30\xff\xff\xff\x7f" + b"x" * 1000)  # PUBLISH claiming 256 MiB
        assert list(reader) == []
        assert tracemalloc.get_traced_memory()[1] < 64 << 10
    finally:
        tracemalloc.stop()
    limited = PacketReader(max_packet_size=1 << 16, version=MQTT_5)
    limited.feed(b"\x30\xff\xff\xff\x7f")
    try:
        list(limited)
    except MqttError as e:
        assert "exceeds" in str(e)
    else:
        raise AssertionError("an oversize packet was not refused from its fixed header")


def test_invalid_utf8_topic_is_malformed():
    for version in (MQTT_311, MQTT_5):
        good = encode(Publish("ab/cd", b"x"), version)
        bad = good.replace(b"ab/cd", b"ab\xff\xfed")  # same length, not UTF-8
        assert read_all(bad, version) == []


def test_seeded_mutation_sweep():
    rng = random.Random(seed())
    for _ in range(knob("FAULTS_HYPOTHESIS_EXAMPLES") * 20):
        version, data = rng.choice(AFTER_CONNECT)
        read_all(mutate(data, rng), version, [rng.randint(0, 30) for _ in range(rng.randint(0, 4))])
