"""MQTT protocol errors. Each carries the MQTT 5 reason code the server sends back
(in CONNACK before a session exists, in DISCONNECT after) before closing the connection."""

from __future__ import annotations

from appliance.errors import ProtocolError
from appliance.mqtt.codec.reason_codes import ReasonCode


class MqttError(ProtocolError):
    reason_code: ReasonCode = ReasonCode.UNSPECIFIED_ERROR

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = ReasonCode(reason_code)


class MalformedPacket(MqttError):
    """The bytes cannot be parsed as the packet they claim to be (spec 4.13)."""

    reason_code = ReasonCode.MALFORMED_PACKET


class ProtocolViolation(MqttError):
    """A well-formed packet that the protocol does not allow here."""

    reason_code = ReasonCode.PROTOCOL_ERROR


class PacketTooLarge(MqttError):
    """Detected from the fixed header, before the body is buffered."""

    reason_code = ReasonCode.PACKET_TOO_LARGE


class UnsupportedProtocolVersion(ProtocolViolation):
    """CONNECT names a protocol level other than 4 (3.1.1) or 5 (5.0)."""

    reason_code = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION

    def __init__(self, message: str, level: int) -> None:
        super().__init__(message)
        self.level = level


class TopicNameInvalid(MqttError):
    reason_code = ReasonCode.TOPIC_NAME_INVALID


class TopicFilterInvalid(MqttError):
    reason_code = ReasonCode.TOPIC_FILTER_INVALID


class TopicAliasInvalid(MqttError):
    reason_code = ReasonCode.TOPIC_ALIAS_INVALID


class ReceiveMaximumExceeded(MqttError):
    reason_code = ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
