"""Sans-IO MQTT 3.1.1 / 5.0 codec: bytes in, packet objects out, and back. Stdlib only."""

from appliance.mqtt.codec.errors import (
    MalformedPacket,
    MqttError,
    PacketTooLarge,
    ProtocolViolation,
    TopicAliasInvalid,
    TopicFilterInvalid,
    TopicNameInvalid,
    UnsupportedProtocolVersion,
)
from appliance.mqtt.codec.packets import (
    MQTT_5,
    MQTT_311,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
    Will,
    decode,
    encode,
)
from appliance.mqtt.codec.properties import PacketType, Properties, PropertyId
from appliance.mqtt.codec.reader import PacketReader
from appliance.mqtt.codec.reason_codes import ReasonCode

__all__ = [
    "MQTT_5", "MQTT_311", "Auth", "ConnAck", "Connect", "Disconnect", "MalformedPacket", "MqttError", "Packet",
    "PacketReader", "PacketTooLarge", "PacketType", "PingReq", "PingResp", "Properties", "PropertyId",
    "ProtocolViolation", "PubAck", "PubComp", "PubRec", "PubRel", "Publish", "ReasonCode", "SubAck",
    "Subscribe", "SubscriptionOptions", "TopicAliasInvalid", "TopicFilterInvalid", "TopicNameInvalid",
    "UnsubAck", "Unsubscribe", "UnsupportedProtocolVersion", "Will", "decode", "encode",
]
