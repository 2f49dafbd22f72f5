"""Which version of each Kafka API the uplink client speaks, negotiated through ApiVersions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from appliance.kafka.protocol.messages import API_KEYS
from appliance.uplink.client.errors import UnsupportedApiError

PRODUCE, METADATA, API_VERSIONS, CREATE_TOPICS, INIT_PRODUCER_ID = 0, 3, 18, 19, 22

# What this client implements (ranges it has been written and tested for), capped by what the
# generated message classes cover. Produce needs v3+ (magic-2 batches, idempotence); Metadata
# v1+ (controller id, rack); CreateTopics v2+ (validate_only, throttle); InitProducerId any.
CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    PRODUCE: (3, 11),
    METADATA: (1, 12),
    API_VERSIONS: (0, 3),
    CREATE_TOPICS: (2, 7),
    INIT_PRODUCER_ID: (0, 5),
}


def negotiate(broker: Iterable[tuple[int, int, int]], client: Mapping[int, tuple[int, int]] = CLIENT_VERSIONS) -> dict[int, int]:
    """{api_key: highest version both sides support} from the broker's (key, min, max) rows.
    APIs with no common version are left out; `pick` raises for them when they are used."""
    out: dict[int, int] = {}
    for key, bmin, bmax in broker:
        if key not in client:
            continue
        cmin, cmax = client[key]
        entry = API_KEYS.get(key)
        if entry is not None:
            cmin, cmax = max(cmin, entry.min_version), min(cmax, entry.max_version)
        hi = min(cmax, bmax)
        if hi >= max(cmin, bmin):
            out[key] = hi
    return out


def pick(versions: Mapping[int, int], api_key: int) -> int:
    v = versions.get(api_key)
    if v is None:
        name = API_KEYS[api_key].name if api_key in API_KEYS else str(api_key)
        lo, hi = CLIENT_VERSIONS.get(api_key, (0, -1))
        raise UnsupportedApiError(f"the broker offers no {name} version in {lo}-{hi}")
    return v
