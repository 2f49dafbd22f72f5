"""Group API handlers: real requests encoded and decoded with the codec at each version, through
the handler, and the response encoded and decoded again, as a client would read it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from appliance.config import KafkaSettings
from appliance.kafka.api import (
    delete_groups,
    describe_groups,
    find_coordinator,
    heartbeat,
    join_group,
    leave_group,
    list_groups,
    offset_commit,
    offset_delete,
    offset_fetch,
    sync_group,
)
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode as E
from appliance.kafka.groups import GroupCoordinator
from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m
from appliance.storage.memory_meta import MemoryMetaStore


class Topics:
    def __init__(self, **partitions: int) -> None:
        self._topics = {name: SimpleNamespace(partitions=n) for name, n in partitions.items()}

    def get(self, name: str):
        return self._topics.get(name)


async def make_broker(delay: float = 0.0, meta: MemoryMetaStore | None = None) -> SimpleNamespace:
    settings = KafkaSettings(group_initial_rebalance_delay=delay, group_min_session_timeout=1.0)
    groups = GroupCoordinator(meta or MemoryMetaStore(), settings, clock=trio.current_time)
    await groups.load()
    return SimpleNamespace(
        node_id=7,
        advertised_host="plant-1.local",
        advertised_port=19092,
        groups=groups,
        topics=Topics(orders=3, alerts=1),
        draining=trio.Event(),
    )


async def call(broker, module, req, version: int, client_id: str = "app"):
    """Encode the request at `version`, decode it, run the handler, and decode its response."""
    wire_req = codec.decode(type(req), version, codec.encode(req, version))
    ctx = RequestContext(broker, module.API_KEY, version, 1, client_id, peer="127.0.0.1:50123")
    resp = await module.handle(ctx, wire_req)
    return codec.decode(type(resp), version, codec.encode(resp, version))


def subscription(*topics: str) -> bytes:
    import struct

    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def join_request(member_id: str = "", instance: str | None = None, meta: bytes = subscription("orders")):
    return m.JoinGroupRequest(
        group_id="g",
        session_timeout_ms=10_000,
        rebalance_timeout_ms=30_000,
        member_id=member_id,
        group_instance_id=instance,
        protocol_type="consumer",
        protocols=[m.JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=meta)],
    )


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
async def test_find_coordinator_answers_this_node(version):
    b = await make_broker()
    if version >= 4:
        r = await call(b, find_coordinator, m.FindCoordinatorRequest(key_type=0, coordinator_keys=["a", "b"]), version)
        assert [(c.key, c.node_id, c.host, c.port, c.error_code) for c in r.coordinators] == [
            ("a", 7, "plant-1.local", 19092, 0),
            ("b", 7, "plant-1.local", 19092, 0),
        ]
    else:
        r = await call(b, find_coordinator, m.FindCoordinatorRequest(key="g"), version)
        assert (r.error_code, r.node_id, r.host, r.port) == (0, 7, "plant-1.local", 19092)
    if version >= 1:
        bad = m.FindCoordinatorRequest(key="g", key_type=9, coordinator_keys=["g"])
        r = await call(b, find_coordinator, bad, version)
        code = r.coordinators[0].error_code if version >= 4 else r.error_code
        assert code == E.INVALID_REQUEST


# (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups)
CLIENT_VERSIONS = [
    (0, 0, 0, 0, 1, 1, 0, 0, 0),  # oldest
    (2, 1, 1, 1, 2, 2, 1, 1, 1),  # kafka-python 2.0 era
    (5, 3, 3, 3, 7, 5, 4, 2, 1),  # librdkafka / kafkajs range
    (7, 4, 4, 4, 8, 7, 5, 4, 2),  # flexible versions
    (9, 5, 4, 5, 8, 8, 5, 5, 2),  # newest classic
]


@pytest.mark.parametrize("versions", CLIENT_VERSIONS, ids=lambda v: f"join-v{v[0]}")
async def test_consumer_lifecycle_through_the_handlers(versions):
    jv, sv, hv, lv, cv, fv, dv, lgv, dgv = versions
    b = await make_broker()
    r = await call(b, join_group, join_request(), jv)
    if jv >= 4:
        assert r.error_code == E.MEMBER_ID_REQUIRED and r.member_id.startswith("app-")
        r = await call(b, join_group, join_request(r.member_id), jv)
    assert r.error_code == E.NONE
    me = r.member_id
    assert (r.generation_id, r.leader, r.protocol_name) == (1, me, "range")
    assert [(x.member_id, x.metadata) for x in r.members] == [(me, subscription("orders"))]
    if jv >= 7:
        assert r.protocol_type == "consumer"

    s = await call(
        b,
        sync_group,
        m.SyncGroupRequest(
            group_id="g",
            generation_id=1,
            member_id=me,
            protocol_type="consumer",
            protocol_name="range",
            assignments=[m.SyncGroupRequest.SyncGroupRequestAssignment(member_id=me, assignment=b"orders:0,1,2")],
        ),
        sv,
    )
    assert (s.error_code, s.assignment) == (E.NONE, b"orders:0,1,2")
    if sv >= 5:
        assert (s.protocol_type, s.protocol_name) == ("consumer", "range")

    h = await call(b, heartbeat, m.HeartbeatRequest(group_id="g", generation_id=1, member_id=me), hv)
    assert h.error_code == E.NONE
    h = await call(b, heartbeat, m.HeartbeatRequest(group_id="g", generation_id=0, member_id=me), hv)
    assert h.error_code == E.ILLEGAL_GENERATION

    P = m.OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition
    commit = m.OffsetCommitRequest(
        group_id="g",
        generation_id_or_member_epoch=1,
        member_id=me,
        topics=[
            m.OffsetCommitRequest.OffsetCommitRequestTopic(
                name="orders",
                partitions=[P(partition_index=0, committed_offset=100, committed_leader_epoch=3, committed_metadata="x"),
                            P(partition_index=1, committed_offset=5, committed_metadata=None)],
            ),
            m.OffsetCommitRequest.OffsetCommitRequestTopic(name="nope", partitions=[P(partition_index=0, committed_offset=1)]),
        ],
    )
    c = await call(b, offset_commit, commit, cv)
    assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions]) for t in c.topics] == [
        ("orders", [(0, E.NONE), (1, E.NONE)]),
        ("nope", [(0, E.UNKNOWN_TOPIC_OR_PARTITION)]),
    ]

    if fv >= 8:
        fetch = m.OffsetFetchRequest(groups=[m.OffsetFetchRequest.OffsetFetchRequestGroup(
            group_id="g", topics=[m.OffsetFetchRequest.OffsetFetchRequestGroup.OffsetFetchRequestTopics(name="orders", partition_indexes=[0, 1, 2])])])
        f = await call(b, offset_fetch, fetch, fv)
        parts = f.groups[0].topics[0].partitions
    else:
        fetch = m.OffsetFetchRequest(group_id="g", topics=[m.OffsetFetchRequest.OffsetFetchRequestTopic(name="orders", partition_indexes=[0, 1, 2])])
        f = await call(b, offset_fetch, fetch, fv)
        parts = f.topics[0].partitions
    got = [(p.partition_index, p.committed_offset, p.metadata, p.error_code) for p in parts]
    assert got == [(0, 100, "x", 0), (1, 5, None, 0), (2, -1, "", 0)]
    if fv >= 5:
        assert parts[0].committed_leader_epoch == (3 if cv >= 6 else -1)

    d = await call(b, describe_groups, m.DescribeGroupsRequest(groups=["g", "ghost"]), dv)
    g, ghost = d.groups
    assert (g.group_state, g.protocol_type, g.protocol_data) == ("Stable", "consumer", "range")
    assert [(x.member_id, x.client_id, x.client_host, x.member_assignment) for x in g.members] == [
        (me, "app", "/127.0.0.1", b"orders:0,1,2")
    ]
    assert (ghost.error_code, ghost.group_state) == (E.NONE, "Dead")

    lg = await call(b, list_groups, m.ListGroupsRequest(), lgv)
    assert [(x.group_id, x.protocol_type) for x in lg.groups] == [("g", "consumer")]
    if lgv >= 4:
        assert lg.groups[0].group_state == "Stable"

    dg = await call(b, delete_groups, m.DeleteGroupsRequest(groups_names=["g"]), dgv)
    assert [(x.group_id, x.error_code) for x in dg.results] == [("g", E.NON_EMPTY_GROUP)]

    if lv >= 3:
        leave = m.LeaveGroupRequest(group_id="g", members=[m.LeaveGroupRequest.MemberIdentity(member_id=me), m.LeaveGroupRequest.MemberIdentity(member_id="ghost")])
        lr = await call(b, leave_group, leave, lv)
        assert lr.error_code == E.NONE
        assert [(x.member_id, x.error_code) for x in lr.members] == [(me, E.NONE), ("ghost", E.UNKNOWN_MEMBER_ID)]
    else:
        lr = await call(b, leave_group, m.LeaveGroupRequest(group_id="g", member_id=me), lv)
        assert lr.error_code == E.NONE
        lr = await call(b, leave_group, m.LeaveGroupRequest(group_id="g", member_id=me), lv)
        assert lr.error_code == E.UNKNOWN_MEMBER_ID

    d = await call(b, describe_groups, m.DescribeGroupsRequest(groups=["g"]), dv)
    assert (d.groups[0].group_state, d.groups[0].members) == ("Empty", [])
    dg = await call(b, delete_groups, m.DeleteGroupsRequest(groups_names=["g", "ghost"]), dgv)
    assert [(x.group_id, x.error_code) for x in dg.results] == [("g", E.NONE), ("ghost", E.GROUP_ID_NOT_FOUND)]
    f = await call(b, offset_fetch, fetch, fv)
    parts = f.groups[0].topics[0].partitions if fv >= 8 else f.topics[0].partitions
    assert [p.committed_offset for p in parts] == [-1, -1, -1]


async def test_two_consumers_long_poll_and_split_the_assignment(autojump_clock):
    b = await make_broker(delay=0.5)
    out: dict[str, tuple] = {}

    async def consumer(name: str) -> None:
        r = await call(b, join_group, join_request(), 5, client_id=name)
        r = await call(b, join_group, join_request(r.member_id), 5, client_id=name)
        assert r.error_code == E.NONE
        assignments = [m.SyncGroupRequest.SyncGroupRequestAssignment(member_id=x.member_id, assignment=x.member_id.encode())
                       for x in r.members]
        s = await call(b, sync_group, m.SyncGroupRequest(group_id="g", generation_id=r.generation_id,
                                                         member_id=r.member_id, assignments=assignments), 3, client_id=name)
        out[name] = (r, s)

    async with trio.open_nursery() as nursery:
        await nursery.start(b.groups.run)
        with trio.fail_after(10):
            async with trio.open_nursery() as clients:
                clients.start_soon(consumer, "one")
                clients.start_soon(consumer, "two")
        nursery.cancel_scope.cancel()
    (r1, s1), (r2, s2) = out["one"], out["two"]
    assert r1.generation_id == r2.generation_id == 1
    assert sorted(len(r.members) for r in (r1, r2)) == [0, 2]  # only the leader sees the members
    assert s1.assignment == r1.member_id.encode() and s2.assignment == r2.member_id.encode()


async def test_draining_broker_releases_a_waiting_join(autojump_clock):
    b = await make_broker(delay=3.0)
    result = {}

    async def join() -> None:
        result["r"] = await call(b, join_group, join_request(), 3)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(join)
        await trio.sleep(1.0)  # inside the initial rebalance delay, with no timer task running
        assert "r" not in result
        b.draining.set()
    assert result["r"].error_code == E.COORDINATOR_NOT_AVAILABLE


async def test_offset_fetch_all_and_several_groups():
    b = await make_broker()
    P = m.OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition
    for group, offset in (("a", 10), ("b", 20)):
        req = m.OffsetCommitRequest(group_id=group, topics=[m.OffsetCommitRequest.OffsetCommitRequestTopic(
            name="orders", partitions=[P(partition_index=2, committed_offset=offset), P(partition_index=0, committed_offset=offset + 1)])])
        c = await call(b, offset_commit, req, 2)  # a standalone consumer: generation -1, no member
        assert all(p.error_code == 0 for t in c.topics for p in t.partitions)
    f = await call(b, offset_fetch, m.OffsetFetchRequest(group_id="a", topics=None), 7)
    assert [(t.name, [(p.partition_index, p.committed_offset) for p in t.partitions]) for t in f.topics] == [
        ("orders", [(0, 11), (2, 10)])
    ]
    G = m.OffsetFetchRequest.OffsetFetchRequestGroup
    f = await call(b, offset_fetch, m.OffsetFetchRequest(groups=[G(group_id="a", topics=None), G(group_id="b", topics=None), G(group_id="none", topics=None)]), 8)
    assert [(g.group_id, [p.committed_offset for t in g.topics for p in t.partitions]) for g in f.groups] == [
        ("a", [11, 10]), ("b", [21, 20]), ("none", [])
    ]


async def test_offset_delete_through_the_handler():
    b = await make_broker()
    (await call(b, join_group, join_request(), 3))
    P = m.OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition
    T = m.OffsetCommitRequest.OffsetCommitRequestTopic
    me = b.groups.describe_group("g").members[0].member_id
    await call(b, sync_group, m.SyncGroupRequest(group_id="g", generation_id=1, member_id=me), 3)
    c = await call(b, offset_commit, m.OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=1, member_id=me, topics=[
        T(name="orders", partitions=[P(partition_index=0, committed_offset=1)]),
        T(name="alerts", partitions=[P(partition_index=0, committed_offset=2)])]), 5)
    assert all(p.error_code == 0 for t in c.topics for p in t.partitions)
    DT = m.OffsetDeleteRequest.OffsetDeleteRequestTopic
    req = m.OffsetDeleteRequest(group_id="g", topics=[
        DT(name="orders", partitions=[DT.OffsetDeleteRequestPartition(partition_index=0)]),
        DT(name="alerts", partitions=[DT.OffsetDeleteRequestPartition(partition_index=0)])])
    r = await call(b, offset_delete, req, 0)
    assert r.error_code == 0
    assert [(t.name, t.partitions[0].error_code) for t in r.topics] == [("orders", E.GROUP_SUBSCRIBED_TO_TOPIC), ("alerts", 0)]
    assert dict(b.groups.fetch_offsets("g", None)) .keys() == {("orders", 0)}
    r = await call(b, offset_delete, m.OffsetDeleteRequest(group_id="ghost", topics=req.topics), 0)
    assert (r.error_code, r.topics) == (E.GROUP_ID_NOT_FOUND, [])


async def test_list_groups_filters_and_describe_operations():
    b = await make_broker()
    await call(b, join_group, join_request(), 3)
    P = m.OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition
    await call(b, offset_commit, m.OffsetCommitRequest(group_id="solo", topics=[m.OffsetCommitRequest.OffsetCommitRequestTopic(
        name="orders", partitions=[P(partition_index=0, committed_offset=1)])]), 0)
    r = await call(b, list_groups, m.ListGroupsRequest(states_filter=["completingrebalance"]), 4)
    assert [(g.group_id, g.group_state) for g in r.groups] == [("g", "CompletingRebalance")]
    r = await call(b, list_groups, m.ListGroupsRequest(states_filter=["Empty"]), 4)
    assert [(g.group_id, g.protocol_type) for g in r.groups] == [("solo", "")]
    r = await call(b, list_groups, m.ListGroupsRequest(types_filter=["consumer"]), 5)
    assert r.groups == []
    r = await call(b, list_groups, m.ListGroupsRequest(types_filter=["Classic"]), 5)
    assert sorted(g.group_id for g in r.groups) == ["g", "solo"]
    d = await call(b, describe_groups, m.DescribeGroupsRequest(groups=["g"], include_authorized_operations=True), 3)
    assert d.groups[0].authorized_operations == describe_groups.ALL_GROUP_OPERATIONS
    # not Stable yet: members are listed without metadata or assignment
    assert d.groups[0].members[0].member_metadata == b"" and d.groups[0].protocol_data == ""
