"""The group state machine, driven with explicit times (no sockets, no sleeping)."""

from __future__ import annotations

import itertools
import struct

from appliance.kafka.group_manager import GroupConfig, GroupManager
from appliance.kafka.group_offsets import OffsetEntry
from appliance.kafka.group_state import Err, JoinRequest, JoinResult, Reply, SyncResult


def manager(delay: float = 0.0, retention: float = 7 * 24 * 3600.0) -> GroupManager:
    ids = itertools.count(1)
    return GroupManager(
        GroupConfig(
            initial_rebalance_delay=delay,
            min_session_timeout=6.0,
            max_session_timeout=300.0,
            offsets_retention=retention,
        ),
        new_id=lambda: f"id{next(ids)}",
    )


def jreq(
    member_id: str = "",
    *,
    group: str = "g",
    client: str = "c",
    protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta"),),
    protocol_type: str = "consumer",
    session_ms: int = 10_000,
    rebalance_ms: int = 30_000,
    instance: str | None = None,
    require_id: bool = False,
) -> JoinRequest:
    return JoinRequest(
        group_id=group,
        member_id=member_id,
        group_instance_id=instance,
        client_id=client,
        client_host="/127.0.0.1",
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms,
        protocol_type=protocol_type,
        protocols=protocols,
        require_known_member_id=require_id,
    )


def done(reply: Reply) -> JoinResult | SyncResult:
    assert reply.done, "expected the long poll to have an answer"
    return reply.result  # type: ignore[return-value]


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 1, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def stable_group(m: GroupManager, n: int, now: float = 0.0, **kw) -> list[str]:
    """Join n members at `now` (delay 0 groups complete as soon as all have joined), sync, return ids."""
    replies = [m.join(jreq(client=f"c{i}", **kw), now) for i in range(n)]
    # with no initial delay the first join completes alone; the others make it rebalance
    ids = [done(replies[0]).member_id] + [None] * (n - 1)
    if n > 1:
        first = m.join(jreq(ids[0], client="c0", **kw), now)
        for i in range(1, n):
            ids[i] = done(replies[i]).member_id
        assert done(first).error == Err.NONE
    gen = m.groups[kw.get("group", "g")].generation
    syncs = [m.sync(kw.get("group", "g"), gen, mid, kw.get("instance"), None, None, {}, now) for mid in ids[1:]]
    leader = m.sync(kw.get("group", "g"), gen, ids[0], kw.get("instance"), None, None, {x: x.encode() for x in ids}, now)
    assert done(leader).error == Err.NONE and all(done(s).error == Err.NONE for s in syncs)
    assert m.groups[kw.get("group", "g")].state.value == "Stable"
    return ids  # type: ignore[return-value]


def test_single_member_joins_leads_and_gets_its_assignment():
    m = manager()
    r = done(m.join(jreq(), 0.0))
    assert r.error == Err.NONE
    assert r.member_id == "c-id1"
    assert r.generation_id == 1
    assert r.leader == r.member_id
    assert r.protocol_type == "consumer" and r.protocol_name == "range"
    assert [(x.member_id, x.metadata) for x in r.members] == [("c-id1", b"meta")]
    assert m.describe("g").state == "CompletingRebalance"
    s = done(m.sync("g", 1, r.member_id, None, None, None, {r.member_id: b"assign"}, 0.1))
    assert (s.error, s.assignment) == (Err.NONE, b"assign")
    assert m.describe("g").state == "Stable"


def test_three_members_join_within_initial_delay_and_sync():
    m = manager(delay=3.0)
    replies = [m.join(jreq(client=f"c{i}", protocols=(("range", f"m{i}".encode()),)), 0.1 * i) for i in range(3)]
    assert not any(r.done for r in replies)  # a new group waits for more members
    m.tick(3.0)  # members arrived during the delay: one more delay
    assert not any(r.done for r in replies)
    assert m.next_deadline() == 6.0
    m.tick(6.0)
    results = [done(r) for r in replies]
    assert {r.generation_id for r in results} == {1}
    leader = results[0]
    assert leader.leader == leader.member_id
    assert [(x.member_id, x.metadata) for x in leader.members] == [(r.member_id, f"m{i}".encode()) for i, r in enumerate(results)]
    assert results[1].members == () and results[2].members == ()
    # followers wait for the leader's assignment
    f1 = m.sync("g", 1, results[1].member_id, None, None, None, {}, 6.1)
    f2 = m.sync("g", 1, results[2].member_id, None, None, None, {}, 6.1)
    assert not f1.done and not f2.done
    assignment = {r.member_id: f"a{i}".encode() for i, r in enumerate(results)}
    lead = m.sync("g", 1, leader.member_id, None, "consumer", "range", assignment, 6.2)
    assert [done(x).assignment for x in (lead, f1, f2)] == [b"a0", b"a1", b"a2"]
    assert m.describe("g").state == "Stable"
    desc = m.describe("g")
    assert [d.assignment for d in desc.members] == [b"a0", b"a1", b"a2"]
    assert desc.protocol_data == "range"


def test_protocol_is_one_all_support_ranked_by_votes():
    m = manager(delay=1.0)
    a = m.join(jreq(client="a", protocols=(("roundrobin", b"1"), ("range", b"2"))), 0.0)
    b = m.join(jreq(client="b", protocols=(("range", b"3"), ("sticky", b"4"), ("roundrobin", b"5"))), 0.0)
    c = m.join(jreq(client="c", protocols=(("sticky", b"6"), ("range", b"7"))), 0.0)
    m.tick(1.0)  # generation 0 group: extended once
    m.tick(2.0)
    # candidates: range only (sticky/roundrobin are not supported by everyone)
    assert {done(r).protocol_name for r in (a, b, c)} == {"range"}
    assert [x.metadata for x in done(a).members] == [b"2", b"3", b"7"]


def test_incompatible_member_is_refused():
    m = manager()
    stable_group(m, 1)
    r = done(m.join(jreq(client="x", protocols=(("other", b""),)), 1.0))
    assert r.error == Err.INCONSISTENT_GROUP_PROTOCOL
    r = done(m.join(jreq(client="x", protocol_type="connect"), 1.0))
    assert r.error == Err.INCONSISTENT_GROUP_PROTOCOL
    assert done(m.join(jreq(group="new", protocol_type=""), 1.0)).error == Err.INCONSISTENT_GROUP_PROTOCOL
    assert "new" not in m.groups


def test_leave_triggers_rebalance_with_next_generation():
    m = manager()
    a, b = stable_group(m, 2)
    gen = m.groups["g"].generation
    res = m.leave("g", [(b, None)], 1.0)
    assert res.error == Err.NONE and [o.error for o in res.members] == [Err.NONE]
    assert m.describe("g").state == "PreparingRebalance"
    assert m.heartbeat("g", gen, a, None, 1.1) == Err.REBALANCE_IN_PROGRESS
    r = done(m.join(jreq(a, client="c0"), 1.2))  # the only member left: completes at once
    assert r.generation_id == gen + 1
    assert [x.member_id for x in r.members] == [a]
    # the one who left is gone
    assert m.heartbeat("g", gen, b, None, 1.3) == Err.UNKNOWN_MEMBER_ID
    assert m.leave("g", [(b, None)], 1.3).members[0].error == Err.UNKNOWN_MEMBER_ID


def test_last_member_leaving_empties_the_group():
    m = manager()
    (a,) = stable_group(m, 1)
    m.leave("g", [(a, None)], 1.0)
    d = m.describe("g")
    assert d.state == "Empty" and d.members == ()
    assert m.groups["g"].generation == 2
    assert done(m.join(jreq(a), 2.0)).error == Err.UNKNOWN_MEMBER_ID


def test_session_timeout_removes_silent_member():
    m = manager()
    a, b = stable_group(m, 2, now=0.0)
    gen = m.groups["g"].generation
    assert m.heartbeat("g", gen, a, None, 5.0) == Err.NONE
    m.tick(9.9)
    assert m.describe("g").state == "Stable"
    m.tick(10.0)  # b's 10 s session is over; a heartbeated at 5 s
    assert m.describe("g").state == "PreparingRebalance"
    assert [d.member_id for d in m.describe("g").members] == [a]
    assert m.heartbeat("g", gen, a, None, 10.1) == Err.REBALANCE_IN_PROGRESS
    assert done(m.join(jreq(a, client="c0"), 10.2)).generation_id == gen + 1
    assert m.heartbeat("g", gen, b, None, 10.3) == Err.UNKNOWN_MEMBER_ID


def test_rebalance_timeout_removes_members_that_do_not_rejoin():
    m = manager()
    a, b = stable_group(m, 2, now=0.0)
    gen = m.groups["g"].generation
    ra = m.join(jreq(a, client="c0"), 1.0)  # the leader rejoins: rebalance
    assert not ra.done
    for t in range(2, 31, 2):  # b keeps heartbeating but never rejoins
        assert m.heartbeat("g", gen, b, None, float(t)) == Err.REBALANCE_IN_PROGRESS
        m.tick(float(t))
    assert not ra.done
    m.tick(31.0)  # 30 s rebalance timeout since 1.0
    r = done(ra)
    assert r.generation_id == gen + 1 and [x.member_id for x in r.members] == [a]
    assert m.heartbeat("g", gen, b, None, 31.5) == Err.UNKNOWN_MEMBER_ID


def test_member_that_does_not_sync_is_removed_after_rebalance_timeout():
    m = manager()
    ra = m.join(jreq(client="a"), 0.0)
    a = done(ra).member_id
    rb = m.join(jreq(client="b"), 0.5)
    ra2 = m.join(jreq(a, client="a"), 0.6)
    b = done(rb).member_id
    gen = done(ra2).generation_id
    lead = m.sync("g", gen, a, None, None, None, {a: b"x", b: b"y"}, 1.0)
    assert done(lead).assignment == b"x"
    for t in (5.0, 10.0, 15.0, 20.0, 25.0, 30.0):  # b heartbeats but never syncs
        assert m.heartbeat("g", gen, b, None, t) == Err.NONE
        assert m.heartbeat("g", gen, a, None, t) == Err.NONE
        m.tick(t)
    assert m.describe("g").state == "Stable"
    m.tick(30.6)
    assert m.describe("g").state == "PreparingRebalance"
    assert [d.member_id for d in m.describe("g").members] == [a]


def test_join_during_completing_rebalance_fails_waiting_syncs():
    m = manager()
    a = done(m.join(jreq(client="a"), 0.0)).member_id
    follower_sync = None
    rb = m.join(jreq(client="b"), 0.1)
    done(m.join(jreq(a, client="a"), 0.2))
    b = done(rb).member_id
    gen = m.groups["g"].generation
    follower_sync = m.sync("g", gen, b, None, None, None, {}, 0.3)
    assert not follower_sync.done
    rc = m.join(jreq(client="c"), 0.4)  # newcomer before the leader synced
    assert done(follower_sync).error == Err.REBALANCE_IN_PROGRESS
    assert not rc.done
    assert done(m.sync("g", gen, a, None, None, None, {}, 0.5)).error == Err.REBALANCE_IN_PROGRESS


def test_member_id_required_flow():
    m = manager()
    first = done(m.join(jreq(require_id=True), 0.0))
    assert first.error == Err.MEMBER_ID_REQUIRED
    assert first.member_id == "c-id1"
    assert m.describe("g").members == ()
    r = done(m.join(jreq(first.member_id, require_id=True), 0.1))
    assert (r.error, r.member_id, r.generation_id) == (Err.NONE, "c-id1", 1)


def test_pending_member_blocks_rebalance_until_it_rejoins_or_expires():
    m = manager()
    (a,) = stable_group(m, 1)
    pending = done(m.join(jreq(client="p", require_id=True), 1.0)).member_id
    ra = m.join(jreq(a, client="c0"), 1.1)
    assert not ra.done  # waits for the member that was told its id
    m.tick(10.9)
    assert not ra.done
    m.tick(11.0)  # its 10 s session timeout passed without the rejoin
    r = done(ra)
    assert r.error == Err.NONE and [x.member_id for x in r.members] == [a]
    assert done(m.join(jreq(pending, client="p", require_id=True), 11.5)).error == Err.UNKNOWN_MEMBER_ID


def test_static_member_rejoins_without_rebalance_and_old_id_is_fenced():
    m = manager()
    ra = m.join(jreq(client="a", instance="inst-a"), 0.0)
    a = done(ra).member_id
    rb = m.join(jreq(client="b", instance="inst-b"), 0.1)
    done(m.join(jreq(a, client="a", instance="inst-a"), 0.2))
    b = done(rb).member_id
    gen = m.groups["g"].generation
    m.sync("g", gen, b, "inst-b", None, None, {}, 0.3)
    m.sync("g", gen, a, "inst-a", None, None, {a: b"A", b: b"B"}, 0.3)
    assert m.describe("g").state == "Stable"
    # b restarts: no member id, same instance id
    r = done(m.join(jreq(client="b", instance="inst-b"), 5.0))
    assert r.error == Err.NONE and r.member_id != b
    assert r.generation_id == gen and m.describe("g").state == "Stable"
    assert r.members == () and not r.skip_assignment
    assert done(m.sync("g", gen, r.member_id, "inst-b", None, None, {}, 5.1)).assignment == b"B"
    assert m.heartbeat("g", gen, b, "inst-b", 5.2) == Err.FENCED_INSTANCE_ID
    assert m.heartbeat("g", gen, r.member_id, "inst-b", 5.2) == Err.NONE
    # the static leader rejoining gets the members and is told to keep the assignment
    ra2 = done(m.join(jreq(client="a", instance="inst-a"), 6.0))
    assert ra2.leader == ra2.member_id and ra2.skip_assignment and len(ra2.members) == 2
    assert m.describe("g").state == "Stable"


def test_error_codes_for_wrong_generation_member_and_arguments():
    m = manager()
    (a,) = stable_group(m, 1)
    gen = m.groups["g"].generation
    assert m.heartbeat("g", gen + 1, a, None, 1.0) == Err.ILLEGAL_GENERATION
    assert m.heartbeat("g", gen, "nobody", None, 1.0) == Err.UNKNOWN_MEMBER_ID
    assert m.heartbeat("nogroup", gen, a, None, 1.0) == Err.UNKNOWN_MEMBER_ID
    assert m.heartbeat("", gen, a, None, 1.0) == Err.INVALID_GROUP_ID
    assert done(m.sync("g", gen - 1, a, None, None, None, {}, 1.0)).error == Err.ILLEGAL_GENERATION
    assert done(m.sync("g", gen, "nobody", None, None, None, {}, 1.0)).error == Err.UNKNOWN_MEMBER_ID
    assert done(m.sync("g", gen, a, None, "consumer", "roundrobin", {}, 1.0)).error == Err.INCONSISTENT_GROUP_PROTOCOL
    assert done(m.join(jreq(session_ms=1000), 1.0)).error == Err.INVALID_SESSION_TIMEOUT
    assert done(m.join(jreq(session_ms=301_000), 1.0)).error == Err.INVALID_SESSION_TIMEOUT
    assert done(m.join(jreq(group=""), 1.0)).error == Err.INVALID_GROUP_ID
    assert done(m.join(jreq("nobody"), 1.0)).error == Err.UNKNOWN_MEMBER_ID
    assert done(m.join(jreq("nobody", group="other"), 1.0)).error == Err.UNKNOWN_MEMBER_ID
    assert m.leave("", [(a, None)], 1.0).error == Err.INVALID_GROUP_ID


def test_offset_commit_validation():
    m = manager()
    # a standalone consumer commits to a group nobody manages
    assert m.validate_commit("solo", -1, "", None, 0.0) == Err.NONE
    assert m.describe("solo").state == "Empty"
    assert m.validate_commit("unknown", 3, "m", None, 0.0) == Err.ILLEGAL_GENERATION
    (a,) = stable_group(m, 1)
    gen = m.groups["g"].generation
    assert m.validate_commit("g", gen, a, None, 1.0) == Err.NONE
    assert m.validate_commit("g", gen - 1, a, None, 1.0) == Err.ILLEGAL_GENERATION
    assert m.validate_commit("g", gen, "nobody", None, 1.0) == Err.UNKNOWN_MEMBER_ID
    assert m.validate_commit("g", -1, "", None, 1.0) == Err.UNKNOWN_MEMBER_ID  # group is in use
    rb = m.join(jreq(client="b"), 2.0)
    assert m.validate_commit("g", gen, a, None, 2.0) == Err.NONE  # still allowed while preparing
    done(m.join(jreq(a, client="c0"), 2.1))
    done(rb)
    assert m.validate_commit("g", gen + 1, a, None, 2.2) == Err.REBALANCE_IN_PROGRESS
    assert m.partition_commit_error("x" * 5000) == Err.OFFSET_METADATA_TOO_LARGE


def test_delete_groups_rules():
    m = manager()
    stable_group(m, 1)
    assert set(m.take_changes()[0]) == {"g"}  # the Stable group's record is due for writing
    m.validate_commit("solo", -1, "", None, 0.0)
    m.offsets.apply("solo", {("t", 0): OffsetEntry(5)}, m.offsets.take_seq())
    res = m.delete_groups(["g", "solo", "missing"], 1.0)
    assert res == {"g": Err.NON_EMPTY_GROUP, "solo": Err.NONE, "missing": Err.GROUP_ID_NOT_FOUND}
    assert m.fetch_offsets("solo", [("t", 0)]) == [(("t", 0), None)]
    assert m.delete_groups(["solo"], 1.0) == {"solo": Err.GROUP_ID_NOT_FOUND}
    groups, tombs = m.take_changes()
    assert groups == {"solo": None} and tombs == [("solo", ("t", 0))]
    assert [g.group_id for g in m.list_groups()] == ["g"]


def test_offset_delete_refuses_subscribed_topics():
    m = manager()
    stable_group(m, 1, protocols=(("range", subscription("orders")),))
    for topic in ("orders", "old"):
        m.offsets.apply("g", {(topic, 0): OffsetEntry(1)}, m.offsets.take_seq())
    err, res = m.delete_offsets("g", [("orders", 0), ("old", 0)])
    assert err == Err.NONE
    assert res == {("orders", 0): Err.GROUP_SUBSCRIBED_TO_TOPIC, ("old", 0): Err.NONE}
    assert m.fetch_offsets("g", None) == [(("orders", 0), OffsetEntry(1))]
    assert m.delete_offsets("missing", [("t", 0)]) == (Err.GROUP_ID_NOT_FOUND, {})


def test_list_groups_filters_states_case_insensitively():
    m = manager()
    stable_group(m, 1)
    m.validate_commit("solo", -1, "", None, 0.0)
    assert {(g.group_id, g.state) for g in m.list_groups()} == {("g", "Stable"), ("solo", "Empty")}
    assert [g.group_id for g in m.list_groups(["empty"])] == ["solo"]
    assert m.list_groups(["Stable"])[0].protocol_type == "consumer"


def test_empty_group_and_its_offsets_expire_after_retention():
    m = manager(retention=100.0)
    m.validate_commit("solo", -1, "", None, 0.0)
    m.offsets.apply("solo", {("t", 0): OffsetEntry(5)}, m.offsets.take_seq())
    m.validate_commit("solo", -1, "", None, 50.0)  # a later commit keeps it alive
    m.tick(120.0)
    assert "solo" in m.groups
    m.tick(150.0)
    assert "solo" not in m.groups
    assert m.take_changes() == ({"solo": None}, [("solo", ("t", 0))])
