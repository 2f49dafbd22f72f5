"""MQTT 5 reason codes (spec 2.4) and the MQTT 3.1.1 CONNACK return codes they map onto."""

from __future__ import annotations

from enum import IntEnum


class ReasonCode(IntEnum):
    SUCCESS = 0x00  # also Normal disconnection and Granted QoS 0
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

    @property
    def is_error(self) -> bool:
        return self >= 0x80


NORMAL_DISCONNECTION = ReasonCode.SUCCESS
GRANTED_QOS_0 = ReasonCode.SUCCESS

# MQTT 3.1.1 CONNACK return codes (spec 3.2.2.3), from the nearest MQTT 5 reason.
_V4_CONNACK = {
    ReasonCode.SUCCESS: 0,
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: 1,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: 2,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: 4,
    ReasonCode.BAD_AUTHENTICATION_METHOD: 4,
    ReasonCode.NOT_AUTHORIZED: 5,
    ReasonCode.BANNED: 5,
}
_V4_CONNACK_BACK = {0: ReasonCode.SUCCESS, 1: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
                    2: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, 3: ReasonCode.SERVER_UNAVAILABLE,
                    4: ReasonCode.BAD_USER_NAME_OR_PASSWORD, 5: ReasonCode.NOT_AUTHORIZED}


def v4_connack_code(reason: int) -> int:
    """The 3.1.1 return code for an MQTT 5 CONNACK reason (3 = server unavailable otherwise)."""
    return _V4_CONNACK.get(ReasonCode(reason), 3)


def from_v4_connack_code(code: int) -> ReasonCode:
    return _V4_CONNACK_BACK[code]


# Which reason codes each acknowledgement may carry (spec 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1,
# 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1). Anything else from a peer is a malformed packet.
PUBACK_CODES = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
PUBREL_CODES = frozenset({0x00, 0x92})
SUBACK_CODES = frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2})
UNSUBACK_CODES = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
AUTH_CODES = frozenset({0x00, 0x18, 0x19})
CONNACK_CODES = frozenset({0x00} | set(range(0x80, 0x9F + 1)) - {0x8B, 0x8D, 0x8E, 0x8F, 0x91, 0x92, 0x93, 0x94,
                                                                  0x96, 0x98, 0x9E})
DISCONNECT_CODES = frozenset({0x00, 0x04} | set(range(0x80, 0xA2 + 1)) - {0x84, 0x85, 0x86, 0x88, 0x8A, 0x8C,
                                                                           0x91, 0x92, 0x9F})
