"""GroupCoordinator: long polls across trio tasks, the timer task, durability through a MetaStore."""

from __future__ import annotations

import trio

from appliance.config import KafkaSettings
from appliance.errors import StorageError
from appliance.kafka.group_state import Err, JoinRequest
from appliance.kafka.groups import GroupCoordinator, OffsetCommit
from appliance.storage.memory_meta import MemoryMetaStore


def settings(delay: float = 0.2) -> KafkaSettings:
    return KafkaSettings(group_initial_rebalance_delay=delay, group_min_session_timeout=1.0)


def join_req(member_id: str = "", client: str = "c", instance: str | None = None) -> JoinRequest:
    return JoinRequest(
        group_id="g",
        member_id=member_id,
        group_instance_id=instance,
        client_id=client,
        client_host="/127.0.0.1",
        session_timeout_ms=6000,
        rebalance_timeout_ms=10_000,
        protocol_type="consumer",
        protocols=(("range", client.encode()),),
        require_known_member_id=True,
    )


async def coordinator(meta: MemoryMetaStore, **kw) -> GroupCoordinator:
    coord = GroupCoordinator(meta, settings(), clock=trio.current_time, wall_clock_ms=lambda: 1_700_000_000_000, **kw)
    await coord.load()
    return coord


async def join_and_sync(coord: GroupCoordinator, client: str, results: dict, instance: str | None = None) -> None:
    """What a consumer does: join (with the MEMBER_ID_REQUIRED round trip), then sync."""
    r = await coord.join_group(join_req(client=client, instance=instance))
    if r.error == Err.MEMBER_ID_REQUIRED:
        r = await coord.join_group(join_req(r.member_id, client=client, instance=instance))
    assert r.error == Err.NONE, r
    assignments = {m.member_id: f"for-{m.member_id}".encode() for m in r.members}
    s = await coord.sync_group("g", r.generation_id, r.member_id, instance, assignments)
    results[client] = (r, s)


async def test_three_consumers_rebalance_concurrently(autojump_clock):
    meta = MemoryMetaStore()
    coord = await coordinator(meta)
    results: dict = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(coord.run)
        with trio.fail_after(5):
            async with trio.open_nursery() as clients:
                for name in ("a", "b", "c"):
                    clients.start_soon(join_and_sync, coord, name, results)
        nursery.cancel_scope.cancel()
    gens = {r.generation_id for r, _ in results.values()}
    assert gens == {1}
    leaders = [r for r, _ in results.values() if r.members]
    assert len(leaders) == 1 and len(leaders[0].members) == 3
    for r, s in results.values():
        assert s.error == Err.NONE and s.assignment == f"for-{r.member_id}".encode()
    assert coord.describe_group("g").state == "Stable"
    snap = coord.snapshot()
    assert snap[0]["state"] == "Stable" and len(snap[0]["members"]) == 3


async def test_timer_task_expires_silent_member_and_survivor_rebalances(autojump_clock):
    meta = MemoryMetaStore()
    coord = await coordinator(meta)
    results: dict = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(coord.run)
        with trio.fail_after(5):
            async with trio.open_nursery() as clients:
                clients.start_soon(join_and_sync, coord, "a", results)
                clients.start_soon(join_and_sync, coord, "b", results)
        (ra, _), (rb, _) = results["a"], results["b"]
        # a keeps heartbeating, b goes silent
        for _ in range(4):
            await trio.sleep(2.0)
            code = await coord.heartbeat("g", ra.generation_id, ra.member_id, None)
            if code == Err.REBALANCE_IN_PROGRESS:
                break
        assert code == Err.REBALANCE_IN_PROGRESS
        with trio.fail_after(5):
            r = await coord.join_group(join_req(ra.member_id, client="a"))
        assert r.generation_id == ra.generation_id + 1 and [m.member_id for m in r.members] == [ra.member_id]
        assert await coord.heartbeat("g", rb.generation_id, rb.member_id, None) == Err.UNKNOWN_MEMBER_ID
        nursery.cancel_scope.cancel()


async def test_offsets_survive_a_restart(autojump_clock):
    meta = MemoryMetaStore()
    coord = await coordinator(meta)
    res = await coord.commit_offsets(
        "solo", -1, "", None, [OffsetCommit("orders", 0, 42, 7, "m"), OffsetCommit("orders", 1, 9)]
    )
    assert res == {("orders", 0): Err.NONE, ("orders", 1): Err.NONE}
    fresh = await coordinator(meta)
    got = dict(fresh.fetch_offsets("solo", [("orders", 0), ("orders", 1), ("orders", 2)]))
    assert (got[("orders", 0)].offset, got[("orders", 0)].leader_epoch, got[("orders", 0)].metadata) == (42, 7, "m")
    assert got[("orders", 1)].offset == 9 and got[("orders", 2)] is None
    assert got[("orders", 0)].commit_ts == 1_700_000_000_000
    assert [g.group_id for g in fresh.list_groups()] == ["solo"]
    # deleting the group deletes its offsets durably
    assert await fresh.delete_groups(["solo"]) == {"solo": Err.NONE}
    assert (await coordinator(meta)).fetch_offsets("solo", None) == []
    assert meta.items("group_offsets") == {}


async def test_stable_group_survives_a_restart_without_rebalance(autojump_clock):
    meta = MemoryMetaStore()
    coord = await coordinator(meta)
    results: dict = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(coord.run)
        with trio.fail_after(5):
            async with trio.open_nursery() as clients:
                clients.start_soon(join_and_sync, coord, "a", results)
                clients.start_soon(join_and_sync, coord, "b", results, "inst-b")
        nursery.cancel_scope.cancel()
    (ra, _), (rb, sb) = results["a"], results["b"]
    assert (await coord.commit_offsets("g", ra.generation_id, ra.member_id, None, [OffsetCommit("t", 0, 5)])) == {
        ("t", 0): Err.NONE
    }
    fresh = await coordinator(meta)
    assert fresh.describe_group("g").state == "Stable"
    assert await fresh.heartbeat("g", ra.generation_id, ra.member_id, None) == Err.NONE
    s = await fresh.sync_group("g", rb.generation_id, rb.member_id, "inst-b", {})
    assert s.assignment == sb.assignment
    assert dict(fresh.fetch_offsets("g", None))[("t", 0)].offset == 5
    # a member that never comes back after the restart expires and the group rebalances
    async with trio.open_nursery() as nursery:
        await nursery.start(fresh.run)
        for _ in range(5):
            await trio.sleep(2.0)
            code = await fresh.heartbeat("g", ra.generation_id, ra.member_id, None)
        assert code == Err.REBALANCE_IN_PROGRESS
        nursery.cancel_scope.cancel()
    assert [m.member_id for m in fresh.describe_group("g").members] == [ra.member_id]


class FailingMeta(MemoryMetaStore):
    fail = False

    async def put_many(self, namespace, entries):
        if self.fail:
            raise StorageError("disk gone")
        await super().put_many(namespace, entries)


async def test_commit_is_not_visible_when_storage_fails():
    meta = FailingMeta()
    coord = await coordinator(meta)
    await coord.commit_offsets("solo", -1, "", None, [OffsetCommit("t", 0, 1)])
    meta.fail = True
    res = await coord.commit_offsets("solo", -1, "", None, [OffsetCommit("t", 0, 2)])
    assert res == {("t", 0): Err.COORDINATOR_NOT_AVAILABLE}
    assert dict(coord.fetch_offsets("solo", None))[("t", 0)].offset == 1
    meta.fail = False
    assert await coord.commit_offsets("solo", -1, "", None, [OffsetCommit("t", 0, 3, metadata="x" * 5000)]) == {
        ("t", 0): Err.OFFSET_METADATA_TOO_LARGE
    }
