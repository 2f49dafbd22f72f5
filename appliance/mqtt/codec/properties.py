"""MQTT 5 properties (spec 2.2.2): identifier, data type and the packets that may carry each.

Properties travel as a plain dict keyed by PropertyId. Two may repeat: USER_PROPERTY is kept as a
list of (name, value) pairs in order, SUBSCRIPTION_IDENTIFIER as a list of ints (several only in
PUBLISH). Every other duplicate, a property in the wrong packet or a bad value is refused with
the reason code the spec names.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from appliance.mqtt.codec.errors import MalformedPacket, ProtocolViolation
from appliance.mqtt.codec.primitives import (
    decode_bin,
    decode_str,
    decode_u8,
    decode_u16,
    decode_u32,
    decode_varint,
    encode_bin,
    encode_str,
    encode_varint,
)

Properties = dict[int, Any]


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


WILL = 0  # pseudo packet type: the will properties inside CONNECT


class PropertyId(IntEnum):
    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


P = PropertyId
T = PacketType
_ALL_WITH_USER = frozenset({T.CONNECT, T.CONNACK, T.PUBLISH, WILL, T.PUBACK, T.PUBREC, T.PUBREL, T.PUBCOMP,
                            T.SUBSCRIBE, T.SUBACK, T.UNSUBSCRIBE, T.UNSUBACK, T.DISCONNECT, T.AUTH})
_ACKS = frozenset({T.CONNACK, T.PUBACK, T.PUBREC, T.PUBREL, T.PUBCOMP, T.SUBACK, T.UNSUBACK, T.DISCONNECT, T.AUTH})

# id -> (data type, packets allowed). Types: byte, u16, u32, varint, str, bin, pair.
SPEC: dict[int, tuple[str, frozenset[int]]] = {
    P.PAYLOAD_FORMAT_INDICATOR: ("byte", frozenset({T.PUBLISH, WILL})),
    P.MESSAGE_EXPIRY_INTERVAL: ("u32", frozenset({T.PUBLISH, WILL})),
    P.CONTENT_TYPE: ("str", frozenset({T.PUBLISH, WILL})),
    P.RESPONSE_TOPIC: ("str", frozenset({T.PUBLISH, WILL})),
    P.CORRELATION_DATA: ("bin", frozenset({T.PUBLISH, WILL})),
    P.SUBSCRIPTION_IDENTIFIER: ("varint", frozenset({T.PUBLISH, T.SUBSCRIBE})),
    P.SESSION_EXPIRY_INTERVAL: ("u32", frozenset({T.CONNECT, T.CONNACK, T.DISCONNECT})),
    P.ASSIGNED_CLIENT_IDENTIFIER: ("str", frozenset({T.CONNACK})),
    P.SERVER_KEEP_ALIVE: ("u16", frozenset({T.CONNACK})),
    P.AUTHENTICATION_METHOD: ("str", frozenset({T.CONNECT, T.CONNACK, T.AUTH})),
    P.AUTHENTICATION_DATA: ("bin", frozenset({T.CONNECT, T.CONNACK, T.AUTH})),
    P.REQUEST_PROBLEM_INFORMATION: ("byte", frozenset({T.CONNECT})),
    P.WILL_DELAY_INTERVAL: ("u32", frozenset({WILL})),
    P.REQUEST_RESPONSE_INFORMATION: ("byte", frozenset({T.CONNECT})),
    P.RESPONSE_INFORMATION: ("str", frozenset({T.CONNACK})),
    P.SERVER_REFERENCE: ("str", frozenset({T.CONNACK, T.DISCONNECT})),
    P.REASON_STRING: ("str", _ACKS),
    P.RECEIVE_MAXIMUM: ("u16", frozenset({T.CONNECT, T.CONNACK})),
    P.TOPIC_ALIAS_MAXIMUM: ("u16", frozenset({T.CONNECT, T.CONNACK})),
    P.TOPIC_ALIAS: ("u16", frozenset({T.PUBLISH})),
    P.MAXIMUM_QOS: ("byte", frozenset({T.CONNACK})),
    P.RETAIN_AVAILABLE: ("byte", frozenset({T.CONNACK})),
    P.USER_PROPERTY: ("pair", _ALL_WITH_USER),
    P.MAXIMUM_PACKET_SIZE: ("u32", frozenset({T.CONNECT, T.CONNACK})),
    P.WILDCARD_SUBSCRIPTION_AVAILABLE: ("byte", frozenset({T.CONNACK})),
    P.SUBSCRIPTION_IDENTIFIER_AVAILABLE: ("byte", frozenset({T.CONNACK})),
    P.SHARED_SUBSCRIPTION_AVAILABLE: ("byte", frozenset({T.CONNACK})),
}

# Byte properties that are booleans: any value but 0 or 1 is a protocol error.
_BOOLEAN = frozenset({P.PAYLOAD_FORMAT_INDICATOR, P.REQUEST_PROBLEM_INFORMATION, P.REQUEST_RESPONSE_INFORMATION,
                      P.MAXIMUM_QOS, P.RETAIN_AVAILABLE, P.WILDCARD_SUBSCRIPTION_AVAILABLE,
                      P.SUBSCRIPTION_IDENTIFIER_AVAILABLE, P.SHARED_SUBSCRIPTION_AVAILABLE})
# Values where zero is a protocol error.
_NONZERO = frozenset({P.RECEIVE_MAXIMUM, P.MAXIMUM_PACKET_SIZE, P.SUBSCRIPTION_IDENTIFIER, P.TOPIC_ALIAS})


def _encode_one(pid: int, kind: str, value: Any) -> bytes:
    head = bytes((pid,))
    if kind == "byte":
        return head + bytes((value,))
    if kind == "u16":
        return head + value.to_bytes(2, "big")
    if kind == "u32":
        return head + value.to_bytes(4, "big")
    if kind == "varint":
        return head + encode_varint(value)
    if kind == "str":
        return head + encode_str(value)
    if kind == "bin":
        return head + encode_bin(value)
    name, val = value
    return head + encode_str(name) + encode_str(val)


def encode_properties(props: Properties | None, packet_type: int) -> bytes:
    """Property length + properties. Raises ValueError for a property the packet may not carry."""
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    for pid, value in props.items():
        spec = SPEC.get(pid)
        if spec is None or packet_type not in spec[1]:
            raise ValueError(f"property 0x{pid:02X} is not allowed in packet type {packet_type}")
        kind = spec[0]
        if pid == P.USER_PROPERTY or (pid == P.SUBSCRIPTION_IDENTIFIER and isinstance(value, (list, tuple))):
            parts.extend(_encode_one(pid, kind, v) for v in value)
        else:
            parts.append(_encode_one(pid, kind, value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def decode_properties(buf: bytes | memoryview, pos: int, packet_type: int) -> tuple[Properties, int]:
    length, pos = decode_varint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise MalformedPacket("property length runs past the packet")
    props: Properties = {}
    while pos < end:
        pid, pos = decode_varint(buf, pos)
        spec = SPEC.get(pid)
        if spec is None:
            raise MalformedPacket(f"unknown property 0x{pid:02X}")
        kind, allowed = spec
        if packet_type not in allowed:
            raise ProtocolViolation(f"property {PropertyId(pid).name} not allowed in this packet")
        if kind == "byte":
            value, pos = decode_u8(buf, pos)
        elif kind == "u16":
            value, pos = decode_u16(buf, pos)
        elif kind == "u32":
            value, pos = decode_u32(buf, pos)
        elif kind == "varint":
            value, pos = decode_varint(buf, pos)
        elif kind == "str":
            value, pos = decode_str(buf, pos)
        elif kind == "bin":
            value, pos = decode_bin(buf, pos)
        else:
            name, pos = decode_str(buf, pos)
            val, pos = decode_str(buf, pos)
            value = (name, val)
        if pos > end:
            raise MalformedPacket("property runs past the property length")
        if pid in _BOOLEAN and value > 1:
            raise ProtocolViolation(f"property {PropertyId(pid).name} must be 0 or 1")
        if pid in _NONZERO and value == 0:
            raise ProtocolViolation(f"property {PropertyId(pid).name} must not be 0")
        if pid == P.USER_PROPERTY:
            props.setdefault(pid, []).append(value)
        elif pid == P.SUBSCRIPTION_IDENTIFIER and packet_type == T.PUBLISH:
            props.setdefault(pid, []).append(value)
        elif pid in props:
            raise ProtocolViolation(f"property {PropertyId(pid).name} included more than once")
        else:
            props[pid] = value
    return props, end
