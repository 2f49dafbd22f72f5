"""The consumer group coordinator (classic protocol) as the broker sees it.

Design: the rules live in `group_manager.GroupManager`, a pure synchronous state machine that
takes `now` on every call and answers long polls (JoinGroup, SyncGroup) with a `Reply` that may
resolve later. This module is its thin trio adapter:

- each request method calls the manager once (no checkpoint in between, so no other task sees a
  half-applied change), then, if the reply is not ready, waits on a trio.Event that the reply's
  callback sets;
- `run()` is the timer task (started by the runtime with `nursery.start`): it sleeps until the
  manager's next deadline (or until a request may have moved one), then calls `tick(now)`;
- durability goes through the MetaStore port: namespace "groups" holds one record per group
  (generation, protocol, and the members with their assignment once Stable; see
  `group_state.group_record`), namespace "group_offsets" one record per committed offset (see
  `group_offsets`). An OffsetCommit is answered only after its `put_many` returned, and the
  in-memory offsets change only then. Group records are written after the change that dirtied
  them (SyncGroup answers its leader after the write; background changes are written by `run`).
- state is loaded from the MetaStore by `await load()` (before serving): a group stored Stable comes back Stable
  with its members (whose session timers start at load), so consumers keep going across a
  restart; a group with only offsets comes back Empty.

The clock (`clock`, monotonic seconds) and wall clock (`wall_clock_ms`) are injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from appliance.config import KafkaSettings
from appliance.errors import StorageError
from appliance.kafka.group_manager import (
    GroupConfig,
    GroupDescription,
    GroupManager,
    ListedGroup,
)
from appliance.kafka.group_offsets import NAMESPACE as OFFSETS_NAMESPACE
from appliance.kafka.group_offsets import OffsetEntry, TopicPartition, offset_key
from appliance.kafka.group_state import (
    Err,
    Group,
    GroupState,
    JoinRequest,
    JoinResult,
    LeaveResult,
    Reply,
    SyncResult,
    group_from_record,
    group_record,
)
from appliance.logs import get_logger
from appliance.storage.ports import MetaStore

log = get_logger("groups")

GROUPS_NAMESPACE = "groups"
_IDLE_WAKEUP = 1.0  # seconds; the timer task re-checks at least this often
_MIN_SLEEP = 0.005


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    """One partition of an OffsetCommit request."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class GroupCoordinator:
    def __init__(
        self,
        meta: MetaStore,
        settings: KafkaSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = _wall_ms,
        new_id: Callable[[], str] | None = None,
        offsets_retention: float = 7 * 24 * 3600.0,
    ) -> None:
        self._meta = meta
        self._clock = clock
        self._wall_ms = wall_clock_ms
        config = GroupConfig(
            initial_rebalance_delay=settings.group_initial_rebalance_delay,
            min_session_timeout=settings.group_min_session_timeout,
            max_session_timeout=settings.group_max_session_timeout,
            offsets_retention=offsets_retention,
        )
        self._config = config
        self._new_id = new_id
        self.manager = self._fresh_manager()
        self._wakeup = trio.Event()

    def _fresh_manager(self) -> GroupManager:
        return GroupManager(self._config, new_id=self._new_id) if self._new_id else GroupManager(self._config)

    # --- loading --------------------------------------------------------------------------------

    def _mono_from_wall(self, wall_ms: int, now: float, now_ms: int) -> float:
        return now - max(0, now_ms - wall_ms) / 1000.0

    async def load(self) -> None:
        """Read groups and offsets from the MetaStore (call once, before serving requests)."""
        await trio.lowlevel.checkpoint()
        self.manager = self._fresh_manager()
        now, now_ms = self._clock(), self._wall_ms()
        n_offsets = self.manager.offsets.load(self._meta.items(OFFSETS_NAMESPACE).items())
        for gid, rec in self._meta.items(GROUPS_NAMESPACE).items():
            since = self._mono_from_wall(int(rec.get("state_ts", now_ms)), now, now_ms)
            try:
                self.manager.add_loaded_group(group_from_record(gid, rec, now, since))
            except (ValueError, KeyError, TypeError) as e:
                log.error("group_record_unreadable", group=gid, error=str(e))
        # groups known only by their offsets (standalone consumers, or before any group record)
        for gid in self.manager.offsets.group_ids():
            last = max(e.commit_ts for e in self.manager.offsets.partitions(gid).values())
            since = self._mono_from_wall(last, now, now_ms) if last >= 0 else now
            group = self.manager.groups.get(gid)
            if group is None:
                self.manager.add_loaded_group(Group(gid, state_since=since))
            elif group.state is GroupState.EMPTY:
                group.state_since = max(group.state_since, since)
        log.info("groups_loaded", groups=len(self.manager.groups), offsets=n_offsets)

    # --- the timer task -------------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Fire session/rebalance/sync timeouts and write what they change. Runs until cancelled."""
        task_status.started()
        while True:
            self.manager.tick(self._clock())
            await self._persist()
            deadline = self.manager.next_deadline()
            # at least _MIN_SLEEP: a deadline that a tick could not clear must not spin the loop
            delay = _IDLE_WAKEUP if deadline is None else min(_IDLE_WAKEUP, max(_MIN_SLEEP, deadline - self._clock()))
            with trio.move_on_after(delay):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def _poke(self) -> None:
        """A request may have moved a deadline earlier: let the timer task recompute."""
        self._wakeup.set()

    async def _persist(self) -> None:
        groups, tombstones = self.manager.take_changes()
        if not groups and not tombstones:
            return
        now, now_ms = self._clock(), self._wall_ms()
        records: dict[str, Any | None] = {}
        for gid, group in groups.items():
            if group is None:
                records[gid] = None
            else:
                state_ts = now_ms - int(max(0.0, now - group.state_since) * 1000)
                records[gid] = group_record(group, state_ts)
        try:
            if tombstones:
                await self._meta.put_many(
                    OFFSETS_NAMESPACE, {offset_key(gid, t, p): None for gid, (t, p) in tombstones}
                )
            if records:
                await self._meta.put_many(GROUPS_NAMESPACE, records)
        except StorageError as e:
            self.manager.restore_changes(groups, tombstones)
            log.error("group_persist_failed", groups=len(records), offsets=len(tombstones), error=str(e))
            raise

    async def _persist_quietly(self) -> None:
        try:
            await self._persist()
        except StorageError:
            pass  # logged; retried by the timer task

    @staticmethod
    async def _wait(reply: Reply[Any], abandon: trio.Event | None) -> Any:
        """The reply's answer, or None if `abandon` (the broker draining) is set first."""
        if reply.done:
            return reply.result
        answered = trio.Event()
        reply.add_done_callback(lambda _r: answered.set())
        if abandon is None:
            await answered.wait()
            return reply.result
        async with trio.open_nursery() as nursery:

            async def first(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first, answered)
            nursery.start_soon(first, abandon)
        return reply.result

    # --- membership -----------------------------------------------------------------------------

    async def join_group(self, req: JoinRequest, *, abandon: trio.Event | None = None) -> JoinResult:
        """JoinGroup; a long poll. If `abandon` is set first (the broker is draining), answer
        COORDINATOR_NOT_AVAILABLE so the client finds the coordinator again and rejoins."""
        reply = self.manager.join(req, self._clock())
        self._poke()
        result: JoinResult | None = await self._wait(reply, abandon)
        await self._persist_quietly()
        return result or JoinResult(Err.COORDINATOR_NOT_AVAILABLE, req.member_id)

    async def sync_group(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: str | None,
        assignments: Mapping[str, bytes],
        *,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
        abandon: trio.Event | None = None,
    ) -> SyncResult:
        """SyncGroup; followers wait for the leader's assignment (see `join_group` for abandon)."""
        reply = self.manager.sync(
            group_id,
            generation,
            member_id,
            group_instance_id,
            protocol_type,
            protocol_name,
            assignments,
            self._clock(),
        )
        self._poke()
        result: SyncResult | None = await self._wait(reply, abandon)
        await self._persist_quietly()
        return result or SyncResult(Err.COORDINATOR_NOT_AVAILABLE)

    async def heartbeat(self, group_id: str, generation: int, member_id: str, group_instance_id: str | None) -> int:
        await trio.lowlevel.checkpoint()
        return self.manager.heartbeat(group_id, generation, member_id, group_instance_id, self._clock())

    async def leave_group(self, group_id: str, members: list[tuple[str, str | None]]) -> LeaveResult:
        result = self.manager.leave(group_id, members, self._clock())
        self._poke()
        await self._persist_quietly()
        return result

    # --- offsets --------------------------------------------------------------------------------

    async def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: Iterable[OffsetCommit],
    ) -> dict[TopicPartition, int]:
        """Validate, write durably, then apply. Returns an error code per partition."""
        offsets = list(offsets)
        error = self.manager.validate_commit(group_id, generation, member_id, group_instance_id, self._clock())
        if error:
            return {(o.topic, o.partition): error for o in offsets}
        now_ms = self._wall_ms()
        results: dict[TopicPartition, int] = {}
        entries: dict[TopicPartition, OffsetEntry] = {}
        for o in offsets:
            tp = (o.topic, o.partition)
            results[tp] = self.manager.partition_commit_error(o.metadata)
            if results[tp] == Err.NONE:
                entries[tp] = OffsetEntry(o.offset, o.leader_epoch, o.metadata, now_ms)
        if entries:
            seq = self.manager.offsets.take_seq()
            try:
                await self._meta.put_many(
                    OFFSETS_NAMESPACE, {offset_key(group_id, t, p): e.record() for (t, p), e in entries.items()}
                )
            except StorageError as e:
                log.error("offset_commit_failed", group=group_id, partitions=len(entries), error=str(e))
                # retriable for every client: it rediscovers the coordinator and commits again
                return {tp: (Err.COORDINATOR_NOT_AVAILABLE if tp in entries else code) for tp, code in results.items()}
            self.manager.offsets.apply(group_id, entries, seq)
        return results

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None
    ) -> list[tuple[TopicPartition, OffsetEntry | None]]:
        """Committed offsets (None where nothing is committed: the handler answers offset -1)."""
        return self.manager.fetch_offsets(group_id, None if partitions is None else list(partitions))

    async def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> tuple[int, dict[TopicPartition, int]]:
        error, results = self.manager.delete_offsets(group_id, list(partitions))
        try:
            await self._persist()
        except StorageError:
            return Err.COORDINATOR_NOT_AVAILABLE, {}
        return error, results

    # --- groups ---------------------------------------------------------------------------------

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, int]:
        results = self.manager.delete_groups(list(group_ids), self._clock())
        try:
            await self._persist()
        except StorageError:
            return {gid: (Err.COORDINATOR_NOT_AVAILABLE if code == Err.NONE else code) for gid, code in results.items()}
        return results

    def describe_group(self, group_id: str) -> GroupDescription:
        return self.manager.describe(group_id)

    def list_groups(self, states: Iterable[str] = ()) -> list[ListedGroup]:
        return self.manager.list_groups(states)

    def snapshot(self) -> list[dict[str, Any]]:
        """Plain data for the admin API: every group, its members and committed offsets."""
        out = []
        for gid in sorted(self.manager.groups):
            g = self.manager.groups[gid]
            out.append(
                {
                    "group_id": gid,
                    "state": g.state.value,
                    "protocol_type": g.protocol_type or "",
                    "protocol": g.protocol_name or "",
                    "generation": g.generation,
                    "leader": g.leader or "",
                    "members": [
                        {
                            "member_id": m.member_id,
                            "group_instance_id": m.group_instance_id,
                            "client_id": m.client_id,
                            "client_host": m.client_host,
                            "session_timeout_ms": int(m.session_timeout * 1000),
                            "assignment_bytes": len(m.assignment),
                        }
                        for m in g.members.values()
                    ],
                    "offsets": [
                        {"topic": t, "partition": p, "offset": e.offset, "metadata": e.metadata, "commit_ts": e.commit_ts}
                        for (t, p), e in sorted(self.manager.offsets.partitions(gid).items())
                    ],
                }
            )
        return out
