"""OffsetFetch (key 9), versions 0-8: committed positions of a group (or, v8, of several).

A partition without a committed offset answers offset -1, metadata "" and no error. v2+ may
ask for every committed partition (topics = null) and carries a top-level error; v5 adds the
leader epoch; v6 is flexible; v7's require_stable is accepted (there are no transactional
offsets pending here, so every offset is stable); v8 batches groups.
"""

from __future__ import annotations

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
    return out


def _parts(cls: type, found: list[tuple[int, OffsetEntry | None]]) -> list:
    return [
        cls(
            partition_index=p,
            committed_offset=e.offset if e else -1,
            committed_leader_epoch=e.leader_epoch if e else -1,
            metadata=e.metadata if e else "",
            error_code=ErrorCode.NONE,
        )
        for p, e in found
    ]


async def handle(ctx: RequestContext, req: m.OffsetFetchRequest) -> m.OffsetFetchResponse:
    if ctx.api_version >= 8:
        G = R.OffsetFetchResponseGroup
        return R(
            throttle_time_ms=0,
            groups=[
                G(
                    group_id=g.group_id,
                    error_code=ErrorCode.NONE,
                    topics=[
                        G.OffsetFetchResponseTopics(name=name, partitions=_parts(G.OffsetFetchResponseTopics.OffsetFetchResponsePartitions, found))
                        for name, found in _fetch(ctx, g.group_id, g.topics).items()
                    ],
                )
                for g in req.groups
            ],
        )
    T = R.OffsetFetchResponseTopic
    topics = req.topics if ctx.api_version >= 2 else (req.topics or [])
    return R(
        throttle_time_ms=0,
        error_code=ErrorCode.NONE,
        topics=[
            T(name=name, partitions=_parts(T.OffsetFetchResponsePartition, found))
            for name, found in _fetch(ctx, req.group_id, topics).items()
        ],
    )
