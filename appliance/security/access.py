"""Per-connection access hooks: the rules applied to one client on one listener, with its limits.

`MqttAccess` implements `appliance.mqtt.session.AccessHook` for one MQTT connection: publish and
subscribe are decided by the Authorizer (through `Security.check`, which audits denials), then the
allowing conduit's limits apply:

- max_qos: a PUBLISH above it closes the connection (QOS_NOT_SUPPORTED, as for the server-wide
  maximum); a subscription is granted at most that QoS;
- max_payload: a larger PUBLISH is refused with QUOTA_EXCEEDED (0x97; PUBACK has no "too large");
- msgs_per_s: a token bucket per conduit and connection (burst: one second's worth); beyond it
  PUBLISH is refused with QUOTA_EXCEEDED. Refusals for limits are counted, not audited as denials.

Pure: time is passed in (`now`, monotonic seconds, for the buckets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.security.pki import Identity

NOT_AUTHORIZED = 0x87
QUOTA_EXCEEDED = 0x97
QOS_NOT_SUPPORTED = 0x9B


@dataclass
class TokenBucket:
    rate: float
    tokens: float
    last: float

    def take(self, now: float) -> bool:
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class RateLimits:
    """Token buckets keyed by conduit name, for one client connection."""

    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    refused: int = 0

    def delay(self, key: str, rate: float, count: int, now: float) -> float:
        """Take `count` at once (going into debt, as Kafka quotas do) and return the seconds the
        client should wait so its rate stays at `rate`: 0 while within the burst."""
        b = self.buckets.get(key)
        if b is None or b.rate != rate:
            b = self.buckets[key] = TokenBucket(rate, max(rate, 1.0), now)
        b.tokens = min(max(rate, 1.0), b.tokens + (now - b.last) * rate) - count
        b.last = now
        if b.tokens >= 0:
            return 0.0
        self.refused += 1
        return -b.tokens / rate

    def allow(self, key: str, rate: float, now: float) -> bool:
        b = self.buckets.get(key)
        if b is None or b.rate != rate:  # a reload may change the rate
            b = self.buckets[key] = TokenBucket(rate, max(rate, 1.0), now)
        if b.take(now):
            return True
        self.refused += 1
        return False


class MqttAccess:
    def __init__(self, security: Any, identity: Identity | None, zone: str | None, listener: str) -> None:
        self.security = security
        self.identity = identity
        self.zone = zone
        self.listener = listener
        self.rates = RateLimits()
        self.too_large = 0

    def check_publish(self, topic: str, qos: int, size: int, now: float) -> int:
        d = self.security.check(self.identity, self.zone, self.listener, "publish", topic)
        if not d.allowed:
            return NOT_AUTHORIZED
        lim = d.limits
        if lim is None:
            return 0
        if lim.max_qos is not None and qos > lim.max_qos:
            return QOS_NOT_SUPPORTED
        if lim.max_payload is not None and size > lim.max_payload:
            self.too_large += 1
            return QUOTA_EXCEEDED
        if lim.msgs_per_s is not None and not self.rates.allow(d.rule_name or "", lim.msgs_per_s, now):
            return QUOTA_EXCEEDED
        return 0

    def check_subscribe(self, topic_filter: str, qos: int, now: float) -> int:
        d = self.security.check(self.identity, self.zone, self.listener, "subscribe", topic_filter)
        if not d.allowed:
            return NOT_AUTHORIZED
        if d.limits is not None and d.limits.max_qos is not None:
            return d.limits.max_qos
        return 2
