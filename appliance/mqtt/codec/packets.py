"""The fifteen MQTT control packets as dataclasses, and their encoding for MQTT 3.1.1 and 5.0.

`encode(packet, version)` gives the complete packet bytes; `decode(first_byte, body, version)`
parses one packet body (the PacketReader finds the boundaries). `version` is the protocol level
negotiated by CONNECT: 4 = MQTT 3.1.1, 5 = MQTT 5.0. CONNECT decodes the same for both and
reports the level it carries. Fields that only exist in MQTT 5 (reason codes of acknowledgements,
properties) are ignored when encoding for 3.1.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from appliance.mqtt.codec.errors import MalformedPacket, ProtocolViolation, UnsupportedProtocolVersion
from appliance.mqtt.codec.primitives import (
    decode_bin,
    decode_str,
    decode_u16,
    encode_bin,
    encode_str,
    encode_varint,
)
from appliance.mqtt.codec.properties import WILL, PacketType, Properties, decode_properties, encode_properties
from appliance.mqtt.codec.reason_codes import (
    AUTH_CODES,
    CONNACK_CODES,
    DISCONNECT_CODES,
    PUBACK_CODES,
    PUBREL_CODES,
    SUBACK_CODES,
    UNSUBACK_CODES,
    ReasonCode,
    from_v4_connack_code,
    v4_connack_code,
)

MQTT_311 = 4
MQTT_5 = 5
SUPPORTED_VERSIONS = (MQTT_311, MQTT_5)


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    type: ClassVar[PacketType] = PacketType.CONNECT
    client_id: str = ""
    protocol_version: int = MQTT_5
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class ConnAck:
    type: ClassVar[PacketType] = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    type: ClassVar[PacketType] = PacketType.PUBLISH
    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class _PubAckBase:
    packet_id: int = 0
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubAck(_PubAckBase):
    type: ClassVar[PacketType] = PacketType.PUBACK


@dataclass(slots=True)
class PubRec(_PubAckBase):
    type: ClassVar[PacketType] = PacketType.PUBREC


@dataclass(slots=True)
class PubRel(_PubAckBase):
    type: ClassVar[PacketType] = PacketType.PUBREL


@dataclass(slots=True)
class PubComp(_PubAckBase):
    type: ClassVar[PacketType] = PacketType.PUBCOMP


@dataclass(slots=True, frozen=True)
class SubscriptionOptions:
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0  # 0 send retained, 1 only if the subscription is new, 2 never

    def to_byte(self, version: int) -> int:
        if version < MQTT_5:
            return self.qos
        return (self.qos | (int(self.no_local) << 2) | (int(self.retain_as_published) << 3)
                | (self.retain_handling << 4))


@dataclass(slots=True)
class Subscribe:
    type: ClassVar[PacketType] = PacketType.SUBSCRIBE
    packet_id: int = 0
    subscriptions: list[tuple[str, SubscriptionOptions]] = field(default_factory=list)
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    type: ClassVar[PacketType] = PacketType.SUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE
    packet_id: int = 0
    filters: list[str] = field(default_factory=list)
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class UnsubAck:
    type: ClassVar[PacketType] = PacketType.UNSUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)  # MQTT 5 only
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PingReq:
    type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(slots=True)
class PingResp:
    type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(slots=True)
class Disconnect:
    type: ClassVar[PacketType] = PacketType.DISCONNECT
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    type: ClassVar[PacketType] = PacketType.AUTH
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = field(default_factory=dict)


Packet = (Connect | ConnAck | Publish | PubAck | PubRec | PubRel | PubComp | Subscribe | SubAck | Unsubscribe
          | UnsubAck | PingReq | PingResp | Disconnect | Auth)

_PINGREQ = b"\xc0\x00"
_PINGRESP = b"\xd0\x00"


# --- encoding -----------------------------------------------------------------------------------


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def encode(packet: Packet, version: int) -> bytes:
    """Complete packet bytes for the negotiated protocol level (4 or 5)."""
    v5 = version >= MQTT_5
    t = packet.type
    if t == PacketType.PUBLISH:
        return encode_publish(packet, version)  # type: ignore[arg-type]
    if t in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        p: _PubAckBase = packet  # type: ignore[assignment]
        flags = 0x02 if t == PacketType.PUBREL else 0
        body = p.packet_id.to_bytes(2, "big")
        if v5 and (p.reason_code or p.properties):
            body += bytes((p.reason_code,))
            if p.properties:
                body += encode_properties(p.properties, t)
        return _frame((t << 4) | flags, body)
    if t == PacketType.PINGREQ:
        return _PINGREQ
    if t == PacketType.PINGRESP:
        return _PINGRESP
    if t == PacketType.CONNECT:
        return _frame(0x10, _connect_body(packet))  # type: ignore[arg-type]
    if t == PacketType.CONNACK:
        c: ConnAck = packet  # type: ignore[assignment]
        if v5:
            body = bytes((int(c.session_present), c.reason_code)) + encode_properties(c.properties, t)
        else:
            body = bytes((int(c.session_present), v4_connack_code(c.reason_code)))
        return _frame(0x20, body)
    if t == PacketType.SUBSCRIBE:
        s: Subscribe = packet  # type: ignore[assignment]
        parts = [s.packet_id.to_bytes(2, "big")]
        if v5:
            parts.append(encode_properties(s.properties, t))
        for topic_filter, opts in s.subscriptions:
            parts.append(encode_str(topic_filter))
            parts.append(bytes((opts.to_byte(version),)))
        return _frame(0x82, b"".join(parts))
    if t == PacketType.SUBACK:
        sa: SubAck = packet  # type: ignore[assignment]
        codes = sa.reason_codes if v5 else [c if c < 0x80 else 0x80 for c in sa.reason_codes]
        body = sa.packet_id.to_bytes(2, "big")
        if v5:
            body += encode_properties(sa.properties, t)
        return _frame(0x90, body + bytes(codes))
    if t == PacketType.UNSUBSCRIBE:
        u: Unsubscribe = packet  # type: ignore[assignment]
        parts = [u.packet_id.to_bytes(2, "big")]
        if v5:
            parts.append(encode_properties(u.properties, t))
        parts.extend(encode_str(f) for f in u.filters)
        return _frame(0xA2, b"".join(parts))
    if t == PacketType.UNSUBACK:
        ua: UnsubAck = packet  # type: ignore[assignment]
        body = ua.packet_id.to_bytes(2, "big")
        if v5:
            body += encode_properties(ua.properties, t) + bytes(ua.reason_codes)
        return _frame(0xB0, body)
    if t == PacketType.DISCONNECT:
        d: Disconnect = packet  # type: ignore[assignment]
        body = b""
        if v5 and (d.reason_code or d.properties):
            body = bytes((d.reason_code,)) + (encode_properties(d.properties, t) if d.properties else b"")
        return _frame(0xE0, body)
    if t == PacketType.AUTH:
        if not v5:
            raise ValueError("AUTH exists only in MQTT 5")
        a: Auth = packet  # type: ignore[assignment]
        body = b""
        if a.reason_code or a.properties:
            body = bytes((a.reason_code,)) + encode_properties(a.properties, t)
        return _frame(0xF0, body)
    raise ValueError(f"cannot encode {packet!r}")


def encode_publish(p: Publish, version: int) -> bytes:
    first = 0x30 | (p.qos << 1) | int(p.retain) | (0x08 if p.dup else 0)
    topic = p.topic.encode("utf-8")
    head = len(topic).to_bytes(2, "big") + topic
    if p.qos:
        head += p.packet_id.to_bytes(2, "big")
    if version >= MQTT_5:
        head += encode_properties(p.properties, PacketType.PUBLISH)
    length = len(head) + len(p.payload)
    return b"".join((bytes((first,)), encode_varint(length), head, p.payload))


def _connect_body(c: Connect) -> bytes:
    v5 = c.protocol_version >= MQTT_5
    flags = 0
    if c.clean_start:
        flags |= 0x02
    if c.will is not None:
        flags |= 0x04 | (c.will.qos << 3) | (0x20 if c.will.retain else 0)
    if c.password is not None:
        flags |= 0x40
    if c.username is not None:
        flags |= 0x80
    parts = [encode_str("MQTT"), bytes((c.protocol_version, flags)), c.keep_alive.to_bytes(2, "big")]
    if v5:
        parts.append(encode_properties(c.properties, PacketType.CONNECT))
    parts.append(encode_str(c.client_id))
    if c.will is not None:
        if v5:
            parts.append(encode_properties(c.will.properties, WILL))
        parts.append(encode_str(c.will.topic))
        parts.append(encode_bin(c.will.payload))
    if c.username is not None:
        parts.append(encode_str(c.username))
    if c.password is not None:
        parts.append(encode_bin(c.password))
    return b"".join(parts)


# --- decoding -----------------------------------------------------------------------------------


def _need_flags(first: int, expected: int) -> None:
    if first & 0x0F != expected:
        raise MalformedPacket(f"reserved flags of packet type {first >> 4} must be {expected:#x}")


def _end(body: bytes | memoryview, pos: int) -> None:
    if pos != len(body):
        raise MalformedPacket("packet has bytes left over after its last field")


def _check_code(code: int, allowed: frozenset[int], what: str) -> int:
    if code not in allowed:
        raise MalformedPacket(f"reason code 0x{code:02X} is not valid in {what}")
    return code


def decode(first: int, body: bytes | memoryview, version: int) -> Packet:
    """One packet from its first byte and body. `version` is the negotiated level (4 or 5)."""
    t = first >> 4
    v5 = version >= MQTT_5
    if t == PacketType.PUBLISH:
        return decode_publish(first, body, v5)
    if t in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        _need_flags(first, 0x02 if t == PacketType.PUBREL else 0)
        cls = _ACK_CLASSES[t]
        packet_id, pos = decode_u16(body, 0)
        code, props = 0, {}
        if v5 and len(body) > 2:
            code = _check_code(body[2], PUBREL_CODES if t in (PacketType.PUBREL, PacketType.PUBCOMP)
                               else PUBACK_CODES, cls.__name__.upper())
            pos = 3
            if len(body) > 3:
                props, pos = decode_properties(body, pos, t)
        _end(body, pos)
        return cls(packet_id, code, props)
    if t in (PacketType.PINGREQ, PacketType.PINGRESP):
        _need_flags(first, 0)
        _end(body, 0)
        return PingReq() if t == PacketType.PINGREQ else PingResp()
    if t == PacketType.CONNECT:
        _need_flags(first, 0)
        return decode_connect(body)
    if t == PacketType.CONNACK:
        _need_flags(first, 0)
        if len(body) < 2:
            raise MalformedPacket("CONNACK too short")
        if body[0] & 0xFE:
            raise MalformedPacket("CONNACK reserved flags set")
        if v5:
            code = _check_code(body[1], CONNACK_CODES, "CONNACK")
            props, pos = decode_properties(body, 2, t)
            _end(body, pos)
            return ConnAck(bool(body[0]), code, props)
        _end(body, 2)
        if body[1] > 5:
            raise MalformedPacket("CONNACK return code above 5")
        return ConnAck(bool(body[0]), from_v4_connack_code(body[1]))
    if t == PacketType.SUBSCRIBE:
        _need_flags(first, 0x02)
        return _decode_subscribe(body, v5)
    if t == PacketType.SUBACK:
        _need_flags(first, 0)
        packet_id, pos = decode_u16(body, 0)
        props = {}
        if v5:
            props, pos = decode_properties(body, pos, t)
        codes = [_check_code(c, SUBACK_CODES if v5 else frozenset({0, 1, 2, 0x80}), "SUBACK") for c in body[pos:]]
        return SubAck(packet_id, codes, props)
    if t == PacketType.UNSUBSCRIBE:
        _need_flags(first, 0x02)
        packet_id, pos = decode_u16(body, 0)
        _nonzero_id(packet_id)
        props = {}
        if v5:
            props, pos = decode_properties(body, pos, t)
        filters = []
        while pos < len(body):
            f, pos = decode_str(body, pos)
            filters.append(f)
        if not filters:
            raise ProtocolViolation("UNSUBSCRIBE without a topic filter")
        return Unsubscribe(packet_id, filters, props)
    if t == PacketType.UNSUBACK:
        _need_flags(first, 0)
        packet_id, pos = decode_u16(body, 0)
        if not v5:
            _end(body, pos)
            return UnsubAck(packet_id)
        props, pos = decode_properties(body, pos, t)
        codes = [_check_code(c, UNSUBACK_CODES, "UNSUBACK") for c in body[pos:]]
        return UnsubAck(packet_id, codes, props)
    if t == PacketType.DISCONNECT:
        _need_flags(first, 0)
        if not v5:
            _end(body, 0)
            return Disconnect()
        if not body:
            return Disconnect()
        code = _check_code(body[0], DISCONNECT_CODES, "DISCONNECT")
        props, pos = decode_properties(body, 1, t) if len(body) > 1 else ({}, 1)
        _end(body, pos)
        return Disconnect(code, props)
    if t == PacketType.AUTH:
        if not v5:
            raise MalformedPacket("AUTH is not an MQTT 3.1.1 packet")
        _need_flags(first, 0)
        if not body:
            return Auth()
        code = _check_code(body[0], AUTH_CODES, "AUTH")
        props, pos = decode_properties(body, 1, t) if len(body) > 1 else ({}, 1)
        _end(body, pos)
        return Auth(code, props)
    raise MalformedPacket(f"packet type {t} is reserved")


_ACK_CLASSES: dict[int, type[_PubAckBase]] = {PacketType.PUBACK: PubAck, PacketType.PUBREC: PubRec,
                                              PacketType.PUBREL: PubRel, PacketType.PUBCOMP: PubComp}


def _nonzero_id(packet_id: int) -> None:
    if packet_id == 0:
        raise ProtocolViolation("packet identifier must not be 0")


def decode_publish_at(first: int, buf: bytes | bytearray, pos: int, end: int, v5: bool) -> Publish:
    """`decode_publish` of the body `buf[pos:end]`, read in place from a receive buffer.

    The hot path of ingestion: the common shapes (valid topic, no MQTT 5 properties) are decoded
    without copying the body first; anything else, including every malformed packet, goes
    through `decode_publish`, so the errors are the same."""
    qos = (first >> 1) & 0x03
    if qos != 3 and not (qos == 0 and first & 0x08) and end - pos >= 2:
        tend = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
        p = tend + 2 if qos else tend
        if p <= end:
            try:
                topic = buf[pos + 2:tend].decode()
            except UnicodeDecodeError:
                topic = "\x00"  # the slow path below says what is wrong
            packet_id = (buf[tend] << 8) | buf[tend + 1] if qos else 0
            if "\x00" not in topic and (packet_id or not qos):
                if not v5:
                    return Publish(topic, bytes(buf[p:end]), qos, bool(first & 0x01), bool(first & 0x08), packet_id, {})
                if p < end and buf[p] == 0:  # MQTT 5 with an empty property list
                    return Publish(topic, bytes(buf[p + 1:end]), qos, bool(first & 0x01), bool(first & 0x08),
                                   packet_id, {})
    return decode_publish(first, bytes(buf[pos:end]), v5)


def decode_publish(first: int, body: bytes | memoryview, v5: bool) -> Publish:
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    dup = bool(first & 0x08)
    if dup and qos == 0:
        raise MalformedPacket("PUBLISH with DUP set at QoS 0")
    topic, pos = decode_str(body, 0)
    packet_id = 0
    if qos:
        packet_id, pos = decode_u16(body, pos)
        _nonzero_id(packet_id)
    props: Properties = {}
    if v5:
        props, pos = decode_properties(body, pos, PacketType.PUBLISH)
    return Publish(topic, bytes(body[pos:]), qos, bool(first & 0x01), dup, packet_id, props)


def _decode_subscribe(body: bytes | memoryview, v5: bool) -> Subscribe:
    packet_id, pos = decode_u16(body, 0)
    _nonzero_id(packet_id)
    props: Properties = {}
    if v5:
        props, pos = decode_properties(body, pos, PacketType.SUBSCRIBE)
    subs: list[tuple[str, SubscriptionOptions]] = []
    while pos < len(body):
        topic_filter, pos = decode_str(body, pos)
        if pos >= len(body):
            raise MalformedPacket("SUBSCRIBE filter without options byte")
        b = body[pos]
        pos += 1
        if b & (0xC0 if v5 else 0xFC):
            raise MalformedPacket("SUBSCRIBE options reserved bits set")
        qos = b & 0x03
        if qos == 3:
            raise MalformedPacket("SUBSCRIBE with QoS 3")
        retain_handling = (b >> 4) & 0x03
        if retain_handling == 3:
            raise ProtocolViolation("retain handling 3 is reserved")
        subs.append((topic_filter, SubscriptionOptions(qos, bool(b & 0x04), bool(b & 0x08), retain_handling)))
    if not subs:
        raise ProtocolViolation("SUBSCRIBE without a topic filter")
    return Subscribe(packet_id, subs, props)


def decode_connect(body: bytes | memoryview) -> Connect:
    name, pos = decode_str(body, 0)
    if pos >= len(body):
        raise MalformedPacket("CONNECT too short")
    level = body[pos]
    if name != "MQTT" or level not in SUPPORTED_VERSIONS:
        raise UnsupportedProtocolVersion(f"protocol {name!r} level {level} is not MQTT 3.1.1 or 5.0", level)
    v5 = level == MQTT_5
    if pos + 4 > len(body):
        raise MalformedPacket("CONNECT too short")
    flags = body[pos + 1]
    keep_alive = (body[pos + 2] << 8) | body[pos + 3]
    pos += 4
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")
    has_will = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if not has_will and (will_qos or will_retain):
        raise MalformedPacket("will QoS or retain set without a will")
    if will_qos == 3:
        raise MalformedPacket("will QoS 3")
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if not v5 and has_password and not has_username:
        raise MalformedPacket("password flag without user name flag (MQTT 3.1.1)")
    props: Properties = {}
    if v5:
        props, pos = decode_properties(body, pos, PacketType.CONNECT)
    client_id, pos = decode_str(body, pos)
    will = None
    if has_will:
        will_props: Properties = {}
        if v5:
            will_props, pos = decode_properties(body, pos, WILL)
        will_topic, pos = decode_str(body, pos)
        will_payload, pos = decode_bin(body, pos)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = password = None
    if has_username:
        username, pos = decode_str(body, pos)
    if has_password:
        password, pos = decode_bin(body, pos)
    _end(body, pos)
    return Connect(client_id, level, bool(flags & 0x02), keep_alive, username, password, will, props)
