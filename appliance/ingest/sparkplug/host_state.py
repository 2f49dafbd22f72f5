"""Sparkplug Host Application STATE (Sparkplug 3.0, see ../shared/sparkplug/FORMAT.md). Pure.

With `[sparkplug] host_id` set, Millstream is a Sparkplug Host Application named `host_id`: edge
nodes watch `spBv1.0/STATE/<host_id>` (retained, QoS 1, JSON `{"online": bool, "timestamp": ms}`)
to know whether the host is online.

- Broker mode (devices connect to Millstream): the birth is published retained into the local
  broker at start-up, the death on graceful shutdown (before clients are disconnected). After a
  crash the retained birth stays until the next start replaces it: edge nodes connected to
  Millstream learn of the crash by losing their own connection.
- Bridge mode (Millstream is a client of an upstream broker): every connection registers the
  death as its MQTT will and then publishes the birth, both carrying that connection's CONNECT
  time as `timestamp`, so an edge node can tell which death belongs to which birth. A graceful
  stop publishes the death itself before DISCONNECT (a normal DISCONNECT suppresses the will).
  The bridge also subscribes to its own STATE topic: a death newer than its birth (so it replaced
  the retained birth) makes it publish the birth again; older deaths, such as the previous
  connection's will queued for its session, are ignored.

The older `STATE/<host_id>` topic with a plain `ONLINE`/`OFFLINE` payload (Sparkplug B 2.2) is
not used: FORMAT.md specifies the 3.0 form.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from appliance.ingest.pipeline import LOCAL_ORIGIN
from appliance.mqtt.session import Message

STATE_QOS = 1
ORIGIN = LOCAL_ORIGIN + "sparkplug-host"


def state_topic(host_id: str) -> str:
    return f"spBv1.0/STATE/{host_id}"


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp_ms}, separators=(",", ":")).encode()


def parse_state(payload: bytes) -> tuple[bool, int] | None:
    """(online, timestamp) of a STATE payload, or None when it is not one."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("online"), bool) or not isinstance(doc.get("timestamp"), int):
        return None
    return doc["online"], doc["timestamp"]


def publish_local_state(broker: Any, host_id: str, online: bool, timestamp_ms: int,
                        now: float) -> Awaitable[None] | None:
    """Publish the STATE message retained into the local MQTT broker core; returns its
    durability waiter (the retained message persisted), if any. Not ingested into Kafka."""
    msg = Message(state_topic(host_id), state_payload(online, timestamp_ms), STATE_QOS, True, {}, None, ORIGIN)
    return broker.publish(msg, now, None)
