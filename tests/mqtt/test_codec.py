"""MQTT codec: every packet round-trips in 3.1.1 and 5.0; malformed input gets the right reason code."""

import pytest

from appliance.errors import ProtocolError
from appliance.mqtt.codec import (
    MQTT_5,
    MQTT_311,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    PacketReader,
    PacketTooLarge,
    PingReq,
    PingResp,
    PropertyId,
    ProtocolViolation,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
    decode,
    encode,
)
from appliance.mqtt.codec.primitives import decode_varint, encode_varint

P = PropertyId


def roundtrip(packet, version):
    data = encode(packet, version)
    reader = PacketReader(version=None if isinstance(packet, Connect) else version)
    # feed one byte at a time: the reader must cope with any split
    out = []
    for i in range(len(data)):
        reader.feed(data[i:i + 1])
        out.extend(reader)
    assert len(out) == 1 and reader.buffered == 0
    return out[0]


V5_PACKETS = [
    Connect("dev-1", MQTT_5, False, 30, "user", b"secret",
            Will("plant/dev-1/status", b"offline", 1, True,
                 {P.WILL_DELAY_INTERVAL: 5, P.MESSAGE_EXPIRY_INTERVAL: 60, P.CONTENT_TYPE: "text/plain",
                  P.USER_PROPERTY: [("k", "v")]}),
            {P.SESSION_EXPIRY_INTERVAL: 3600, P.RECEIVE_MAXIMUM: 10, P.MAXIMUM_PACKET_SIZE: 4096,
             P.TOPIC_ALIAS_MAXIMUM: 5, P.REQUEST_PROBLEM_INFORMATION: 0, P.USER_PROPERTY: [("a", "1"), ("a", "2")]}),
    Connect("", MQTT_5, True, 0, None, b"pw-without-user"),
    ConnAck(True, ReasonCode.SUCCESS, {P.ASSIGNED_CLIENT_IDENTIFIER: "auto-1", P.SERVER_KEEP_ALIVE: 60,
                                       P.RECEIVE_MAXIMUM: 100, P.MAXIMUM_QOS: 1, P.RETAIN_AVAILABLE: 0,
                                       P.SHARED_SUBSCRIPTION_AVAILABLE: 1}),
    ConnAck(False, ReasonCode.NOT_AUTHORIZED, {P.REASON_STRING: "no"}),
    Publish("a/b", b"payload", 0, True),
    Publish("a/b", b"\x00\xff" * 100, 1, False, True, 7, {P.MESSAGE_EXPIRY_INTERVAL: 10}),
    Publish("", b"x", 2, False, False, 65535, {P.TOPIC_ALIAS: 3, P.SUBSCRIPTION_IDENTIFIER: [1, 268_435_455],
                                              P.CORRELATION_DATA: b"\x01", P.RESPONSE_TOPIC: "r/1",
                                              P.PAYLOAD_FORMAT_INDICATOR: 1, P.USER_PROPERTY: [("u", "ü")]}),
    PubAck(1), PubAck(2, ReasonCode.NO_MATCHING_SUBSCRIBERS), PubAck(3, ReasonCode.QUOTA_EXCEEDED, {P.REASON_STRING: "full"}),
    PubRec(4), PubRec(5, ReasonCode.UNSPECIFIED_ERROR),
    PubRel(6), PubRel(7, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND),
    PubComp(8), PubComp(9, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, {P.USER_PROPERTY: [("x", "y")]}),
    Subscribe(10, [("a/+/c", SubscriptionOptions(1, True, True, 2)), ("$share/g/#", SubscriptionOptions(2))],
              {P.SUBSCRIPTION_IDENTIFIER: 42}),
    SubAck(10, [1, 2, ReasonCode.TOPIC_FILTER_INVALID], {P.REASON_STRING: "partly"}),
    Unsubscribe(11, ["a/+/c", "x"], {P.USER_PROPERTY: [("k", "v")]}),
    UnsubAck(11, [ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED]),
    PingReq(), PingResp(),
    Disconnect(), Disconnect(ReasonCode.DISCONNECT_WITH_WILL, {P.SESSION_EXPIRY_INTERVAL: 0}),
    Disconnect(ReasonCode.SERVER_SHUTTING_DOWN),
    Auth(), Auth(ReasonCode.CONTINUE_AUTHENTICATION, {P.AUTHENTICATION_METHOD: "SCRAM", P.AUTHENTICATION_DATA: b"d"}),
]

V4_PACKETS = [
    Connect("dev-1", MQTT_311, False, 30, "user", b"secret", Will("t/will", b"bye", 2, True)),
    Connect("", MQTT_311, True, 0),
    ConnAck(True), ConnAck(False, ReasonCode.NOT_AUTHORIZED), ConnAck(False, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION),
    Publish("a/b", b"p", 0), Publish("a/b", b"p" * 300, 1, True, True, 9), Publish("a", b"", 2, False, False, 1),
    PubAck(1), PubRec(2), PubRel(3), PubComp(4),
    Subscribe(5, [("a/#", SubscriptionOptions(2)), ("b", SubscriptionOptions(0))]),
    SubAck(5, [2, 0, 0x80]), Unsubscribe(6, ["a/#"]), UnsubAck(6),
    PingReq(), PingResp(), Disconnect(),
]


@pytest.mark.parametrize("packet", V5_PACKETS, ids=lambda p: type(p).__name__)
def test_v5_round_trip(packet):
    assert roundtrip(packet, MQTT_5) == packet


@pytest.mark.parametrize("packet", V4_PACKETS, ids=lambda p: type(p).__name__)
def test_v311_round_trip(packet):
    assert roundtrip(packet, MQTT_311) == packet


def test_v311_drops_v5_only_fields():
    assert encode(PubAck(3, ReasonCode.QUOTA_EXCEEDED), MQTT_311) == b"\x40\x02\x00\x03"
    assert encode(Disconnect(ReasonCode.SERVER_SHUTTING_DOWN), MQTT_311) == b"\xe0\x00"
    # a 5.0 refusal becomes the nearest 3.1.1 return code
    assert encode(ConnAck(False, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID), MQTT_311) == b"\x20\x02\x00\x02"


def test_known_bytes_from_the_spec():
    # PUBACK with success and no properties is 2 bytes of body in 5.0 too
    assert encode(PubAck(1), MQTT_5) == b"\x40\x02\x00\x01"
    assert encode(PingReq(), MQTT_5) == b"\xc0\x00"
    assert encode(Publish("a/b", b"hi", 1, packet_id=10), MQTT_311) == b"\x32\x09\x00\x03a/b\x00\x0ahi"


@pytest.mark.parametrize("value", [0, 127, 128, 16383, 16384, 2_097_151, 2_097_152, 268_435_455])
def test_varint_boundaries(value):
    data = encode_varint(value)
    assert len(data) == (1 if value < 128 else 2 if value < 16384 else 3 if value < 2_097_152 else 4)
    assert decode_varint(data, 0) == (value, len(data))


def test_varint_longer_than_four_bytes_is_malformed():
    with pytest.raises(MalformedPacket):
        decode_varint(b"\xff\xff\xff\xff\x7f", 0)


def first_error(data: bytes, version: int | None = MQTT_5) -> BaseException:
    reader = PacketReader(version=version)
    reader.feed(data)
    with pytest.raises(ProtocolError) as e:
        list(reader)
    return e.value


@pytest.mark.parametrize("data,code", [
    (b"\x30\x05\x00\x03a\x00b", 0x81),                    # topic containing U+0000
    (b"\x30\x04\x00\x02\xc3\x28", 0x81),                  # ill-formed UTF-8
    (b"\x30\x05\x00\x03\xed\xa0\x80", 0x81),              # encoded surrogate U+D800
    (b"\x36\x03\x00\x01a", 0x81),                         # QoS 3
    (b"\x38\x04\x00\x01a\x00", 0x81),                     # DUP at QoS 0
    (b"\x41\x02\x00\x01", 0x81),                          # PUBACK with reserved flag bits
    (b"\x60\x02\x00\x01", 0x81),                          # PUBREL must have flags 0010
    (b"\x80\x06\x00\x01\x00\x00\x01a", 0x81),             # SUBSCRIBE must have flags 0010
    (b"\x82\x03\x00\x01\x00", 0x82),                      # SUBSCRIBE without any filter
    (b"\x82\x07\x00\x01\x00\x00\x01a\x03", 0x81),         # subscription QoS 3
    (b"\x82\x07\x00\x01\x00\x00\x01a\xc0", 0x81),         # reserved subscription option bits
    (b"\x82\x07\x00\x01\x00\x00\x01a\x30", 0x82),         # retain handling 3
    (b"\x32\x06\x00\x01a\x00\x00\x00", 0x82),             # QoS 1 with packet id 0
    (b"\x30\x06\x00\x01a\x02\x63\x00", 0x81),             # unknown property 0x63
    (b"\x30\x06\x00\x01a\x02\x11\x00", 0x82),            # session expiry not allowed in PUBLISH
    (b"\x40\x03\x00\x01\x05", 0x81),                      # PUBACK reason code 0x05 does not exist there
    (b"\x00\x00", 0x81),                                  # reserved packet type 0
    (b"\xc0\x01\x00", 0x81),                              # PINGREQ with a body
])
def test_malformed_packets_get_their_reason_code(data, code):
    err = first_error(data)
    assert err.reason_code == code, err


def test_duplicate_property_is_a_protocol_error():
    body = b"\x00\x01a" + b"\x06" + b"\x23\x00\x01" + b"\x23\x00\x02"
    err = first_error(bytes((0x30, len(body))) + body)
    assert isinstance(err, ProtocolViolation) and err.reason_code == 0x82


def test_boolean_and_zero_properties_are_checked():
    body = b"\x00\x01a\x02\x01\x02"  # payload format indicator 2
    assert first_error(bytes((0x30, len(body))) + body).reason_code == 0x82
    body = b"\x00\x01a\x02\x23\x00"  # truncated topic alias
    assert first_error(bytes((0x30, len(body))) + body).reason_code == 0x81


def test_auth_is_not_a_311_packet():
    assert first_error(b"\xf0\x00", MQTT_311).reason_code == 0x81


def test_first_packet_must_be_connect():
    err = first_error(encode(PingReq(), MQTT_5), version=None)
    assert err.reason_code == ReasonCode.PROTOCOL_ERROR


def test_unsupported_protocol_level_reports_the_level():
    data = bytearray(encode(Connect("x", MQTT_311), MQTT_311))
    data[8] = 3  # protocol level byte
    err = first_error(bytes(data), version=None)
    assert isinstance(err, UnsupportedProtocolVersion) and err.level == 3 and err.reason_code == 0x84


def test_connect_flag_rules():
    good = bytearray(encode(Connect("x", MQTT_311, username=None, password=None), MQTT_311))
    bad = bytearray(good)
    bad[9] |= 0x01  # reserved flag
    assert first_error(bytes(bad), None).reason_code == 0x81
    bad = bytearray(good)
    bad[9] |= 0x08  # will QoS without will flag
    assert first_error(bytes(bad), None).reason_code == 0x81
    with pytest.raises(MalformedPacket):  # 3.1.1: password without user name
        decode(0x10, encode(Connect("x", MQTT_311, password=b"p"), MQTT_311)[2:], MQTT_311)


def test_oversize_packet_refused_from_the_fixed_header():
    reader = PacketReader(max_packet_size=1000, version=MQTT_5)
    header = b"\x30" + encode_varint(100_000)
    reader.feed(header)  # only the fixed header has arrived; the body is never buffered
    with pytest.raises(PacketTooLarge) as e:
        reader.next_packet()
    assert e.value.reason_code == ReasonCode.PACKET_TOO_LARGE


def test_reader_splits_a_stream_of_packets():
    packets = [Publish(f"t/{i}", bytes(i), i % 3, packet_id=i + 1 if i % 3 else 0) for i in range(50)]
    data = b"".join(encode(p, MQTT_5) for p in packets)
    reader = PacketReader(version=MQTT_5)
    got = []
    for i in range(0, len(data), 7):
        reader.feed(data[i:i + 7])
        got.extend(reader)
    assert got == packets


def test_pending_size_announces_the_head_packet_once_its_fixed_header_is_in():
    packets = [Publish("t", bytes(n), 1, packet_id=1) for n in (0, 120, 20_000, 3_000_000)]
    for p in packets:
        data = encode(p, MQTT_5)
        reader = PacketReader(version=MQTT_5, max_packet_size=1 << 24)
        sizes = []
        for i in range(len(data) - 1):  # byte by byte up to the last: the size, once known, is exact
            reader.feed(data[i:i + 1])
            sizes.append(reader.pending_size())
            if i > 8:
                break
        header_len = next(i for i in range(1, 5) if not data[i] & 0x80) + 1  # type byte + varint
        assert sizes[0] is None
        assert set(sizes[header_len - 1:]) == {len(data)}, (sizes, header_len)


def test_errors_are_protocol_errors_carrying_codes():
    assert issubclass(MalformedPacket, ProtocolError)
    assert MalformedPacket("x").reason_code == 0x81
    assert PacketTooLarge("x").reason_code == 0x95
