"""OffsetFetch (key 9), versions 0-8: committed positions of a group (or, v8, of several).

A partition without a committed offset answers offset -1, metadata "" and no error. v2+ may
ask for every committed partition (topics = null) and carries a top-level error; v5 adds the
leader epoch; v6 is flexible; v7's require_stable is accepted (there are no transactional
offsets pending here, so every offset is stable); v8 batches groups.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.group_offsets import OffsetEntry
from appliance.kafka.protocol import messages as m

API_KEY = 9
VERSIONS = (0, 8)

R = m.OffsetFetchResponse


def _fetch(ctx: RequestContext, group_id: str, topics: list | None) -> dict[str, list[tuple[int, OffsetEntry | None]]]:
    """{topic: [(partition, entry or None)]} in request order (or sorted, for "all")."""
    wanted = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    out: dict[str, list[tuple[int, OffsetEntry | None]]] = {}
    for (topic, partition), entry in ctx.broker.groups.fetch_offsets(group_id, wanted):
        out.setdefault(topic, []).append((partition, entry))
    if topics is not None:
        for t in topics:  # a topic asked with no partitions still appears
            out.setdefault(t.name, [])
    else:  # "all committed": only the topics the client may consume, as Kafka filters by Describe
        out = {name: found for name, found in out.items() if authz.visible(ctx, "consume", name)}
    return out


def _parts(cls: type, found: list[tuple[int, OffsetEntry | None]], error: int = 0) -> list:
    if error:
        found = [(p, None) for p, _ in found]
    return [
        cls(
            partition_index=p,
            committed_offset=e.offset if e else -1,
            committed_leader_epoch=e.leader_epoch if e else -1,
            metadata=e.metadata if e else "",
            error_code=error,
        )
        for p, e in found
    ]


def _denied(ctx: RequestContext, group_id: str, topics: list | None) -> tuple[int, dict[str, int]]:
    """(group error, {topic: error}) for the asked topics."""
    group = authz.group_error(ctx, "group_commit", group_id)
    named = {} if topics is None else {t.name: authz.topic_error(ctx, "consume", t.name) for t in topics}
    return group, named


async def handle(ctx: RequestContext, req: m.OffsetFetchRequest) -> m.OffsetFetchResponse:
    if ctx.api_version >= 8:
        G = R.OffsetFetchResponseGroup
        P = G.OffsetFetchResponseTopics.OffsetFetchResponsePartitions
        groups = []
        for g in req.groups:
            group_err, topic_errs = _denied(ctx, g.group_id, g.topics)
            if group_err:
                groups.append(G(group_id=g.group_id, error_code=group_err, topics=[]))
                continue
            groups.append(G(group_id=g.group_id, error_code=ErrorCode.NONE, topics=[
                G.OffsetFetchResponseTopics(name=name, partitions=_parts(P, found, topic_errs.get(name, 0)))
                for name, found in _fetch(ctx, g.group_id, g.topics).items()]))
        return R(throttle_time_ms=0, groups=groups)
    T = R.OffsetFetchResponseTopic
    topics = req.topics if ctx.api_version >= 2 else (req.topics or [])
    group_err, topic_errs = _denied(ctx, req.group_id, topics)
    if group_err and ctx.api_version >= 2:
        return R(throttle_time_ms=0, error_code=group_err, topics=[])
    return R(
        throttle_time_ms=0,
        error_code=ErrorCode.NONE,
        topics=[
            T(name=name, partitions=_parts(T.OffsetFetchResponsePartition, found, group_err or topic_errs.get(name, 0)))
            for name, found in _fetch(ctx, req.group_id, topics).items()
        ],
    )
