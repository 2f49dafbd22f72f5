"""The classic group coordinator's state machine: pure, synchronous, time passed in.

Every request is one call (`join`, `sync`, `heartbeat`, `leave`, `validate_commit`, ...) that takes
`now` (monotonic seconds) and changes the groups at once. JoinGroup and SyncGroup are long polls:
they return a `Reply` that may resolve later, when another member's request or `tick(now)`
completes the rebalance. `tick(now)` fires every deadline that has passed (session timeouts,
the rebalance timeout, the initial rebalance delay, the sync timeout, Empty-group expiry);
`next_deadline()` says when it next has work. Nothing here awaits, sleeps or does IO, so the
tests drive it with a fake clock; `groups.GroupCoordinator` is the trio/MetaStore adapter.

The behaviour follows Apache Kafka's classic (pre-KIP-848) coordinator:

    Empty --join--> PreparingRebalance --all joined / rebalance timeout--> CompletingRebalance
    CompletingRebalance --leader's SyncGroup--> Stable --join / leave / expiry--> PreparingRebalance
    PreparingRebalance --nobody left--> Empty (generation + 1);  DeleteGroups: Empty --> Dead

- A new group (or one coming back from Empty) waits `initial_rebalance_delay` for more members,
  extended by one more delay each time a member arrives, capped by the rebalance timeout.
- The first member is the leader; it gets every member's metadata for the selected protocol
  (the one all members support that most members rank first) and hands out the assignment.
- JoinGroup v4+ without a member id gets MEMBER_ID_REQUIRED with a fresh id; until it rejoins
  with it (or its session timeout passes) the rebalance waits for it, as Kafka does.
- Static members (group.instance.id) keep their identity across restarts: a rejoin with the same
  instance id replaces the old member id (the old one is fenced) and, in a Stable group whose
  selected protocol does not change, gets its assignment back without a rebalance.
- Members that do not rejoin before the rebalance timeout are removed; members that do not send
  SyncGroup within the rebalance timeout after the join are removed (and the group rebalances).
- Offsets: simple (standalone) commits with generation -1 and no member id are accepted for
  Empty groups; commits from members are checked against member id and generation.
- An Empty group (with its offsets) is forgotten `offsets_retention` after it became Empty or
  was last committed to, whichever is later (Kafka: offsets.retention.minutes, 7 days).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from appliance.kafka.group_offsets import MAX_METADATA_BYTES, OffsetCache, OffsetEntry, TopicPartition
from appliance.kafka.group_state import (
    Err,
    Group,
    GroupState,
    JoinRequest,
    JoinResult,
    LeaveOutcome,
    LeaveResult,
    Member,
    Reply,
    SyncResult,
)
from appliance.logs import get_logger

log = get_logger("groups")

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    GroupState.EMPTY,
    GroupState.PREPARING_REBALANCE,
    GroupState.COMPLETING_REBALANCE,
    GroupState.STABLE,
    GroupState.DEAD,
)


@dataclass(frozen=True, slots=True)
class GroupConfig:
    initial_rebalance_delay: float = 3.0  # seconds
    min_session_timeout: float = 6.0
    max_session_timeout: float = 1800.0
    offsets_retention: float = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    error: int
    state: str
    protocol_type: str
    protocol_data: str
    members: tuple[MemberDescription, ...]


@dataclass(frozen=True, slots=True)
class ListedGroup:
    group_id: str
    protocol_type: str
    state: str


def consumer_subscription_topics(metadata: bytes) -> set[str] | None:
    """Topics of a ConsumerProtocolSubscription (any version: version int16, then the topic
    array, non-flexible encoding), or None if it does not parse."""
    try:
        (_version, count) = struct.unpack_from(">hi", metadata, 0)
        pos, topics = 6, set()
        for _ in range(count):
            (n,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if n < 0 or pos + n > len(metadata):
                return None
            topics.add(metadata[pos : pos + n].decode())
            pos += n
        return topics
    except (struct.error, UnicodeDecodeError):
        return None


class GroupManager:
    def __init__(self, config: GroupConfig, *, new_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self.config = config
        self._new_id = new_id
        self.groups: dict[str, Group] = {}
        self.offsets = OffsetCache()
        self._dirty: set[str] = set()  # group records to (re)write or delete
        self._offset_tombstones: list[tuple[str, TopicPartition]] = []

    # --- persistence hand-off -------------------------------------------------------------------

    def take_changes(self) -> tuple[dict[str, Group | None], list[tuple[str, TopicPartition]]]:
        """Group records to write (None = delete) and offsets to delete, since the last call."""
        groups = {gid: self.groups.get(gid) for gid in self._dirty}
        tombs = self._offset_tombstones
        self._dirty = set()
        self._offset_tombstones = []
        return groups, tombs

    def restore_changes(self, group_ids: Iterable[str], tombstones: list[tuple[str, TopicPartition]]) -> None:
        """Put back changes whose write failed, so the next persist retries them."""
        self._dirty.update(group_ids)
        self._offset_tombstones.extend(tombstones)

    def add_loaded_group(self, group: Group) -> None:
        self.groups[group.group_id] = group

    # --- JoinGroup ------------------------------------------------------------------------------

    def join(self, req: JoinRequest, now: float) -> Reply[JoinResult]:
        reply: Reply[JoinResult] = Reply()
        if not req.group_id:
            reply.resolve(JoinResult(Err.INVALID_GROUP_ID, req.member_id))
            return reply
        session = req.session_timeout_ms / 1000.0
        if not self.config.min_session_timeout <= session <= self.config.max_session_timeout:
            reply.resolve(JoinResult(Err.INVALID_SESSION_TIMEOUT, req.member_id))
            return reply
        rebalance = (req.rebalance_timeout_ms if req.rebalance_timeout_ms >= 0 else req.session_timeout_ms) / 1000.0
        group = self.groups.get(req.group_id)
        if req.member_id == "":
            if group is None:
                if not (req.protocol_type and req.protocols):
                    reply.resolve(JoinResult(Err.INCONSISTENT_GROUP_PROTOCOL))
                    return reply
                group = Group(req.group_id, state_since=now)
                self.groups[req.group_id] = group
            self._join_new(group, req, session, rebalance, now, reply)
        elif group is None:
            reply.resolve(JoinResult(Err.UNKNOWN_MEMBER_ID, req.member_id))
        else:
            self._join_known(group, req, session, rebalance, now, reply)
        return reply

    def _join_new(
        self, group: Group, req: JoinRequest, session: float, rebalance: float, now: float, reply: Reply[JoinResult]
    ) -> None:
        if group.is_(DEAD):
            reply.resolve(JoinResult(Err.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(req.protocol_type, req.protocols):
            reply.resolve(JoinResult(Err.INCONSISTENT_GROUP_PROTOCOL))
            return
        new_id = f"{req.client_id}-{self._new_id()}"
        if req.group_instance_id:
            old_id = group.static_members.get(req.group_instance_id)
            if old_id is None:
                self._add_member_and_rebalance(group, new_id, req, session, rebalance, now, reply)
            else:
                self._replace_static_member(group, old_id, new_id, req, session, rebalance, now, reply)
        elif req.require_known_member_id:
            group.pending_members[new_id] = now + session
            reply.resolve(JoinResult(Err.MEMBER_ID_REQUIRED, new_id))
        else:
            self._add_member_and_rebalance(group, new_id, req, session, rebalance, now, reply)

    def _join_known(
        self, group: Group, req: JoinRequest, session: float, rebalance: float, now: float, reply: Reply[JoinResult]
    ) -> None:
        if group.is_(DEAD):
            reply.resolve(JoinResult(Err.COORDINATOR_NOT_AVAILABLE, req.member_id))
            return
        if not group.supports_protocols(req.protocol_type, req.protocols):
            reply.resolve(JoinResult(Err.INCONSISTENT_GROUP_PROTOCOL, req.member_id))
            return
        if req.member_id in group.pending_members:
            self._add_member_and_rebalance(group, req.member_id, req, session, rebalance, now, reply)
            return
        if req.group_instance_id:
            owner = group.static_members.get(req.group_instance_id)
            if owner is not None and owner != req.member_id:
                reply.resolve(JoinResult(Err.FENCED_INSTANCE_ID, req.member_id))
                return
        member = group.members.get(req.member_id)
        if member is None:
            reply.resolve(JoinResult(Err.UNKNOWN_MEMBER_ID, req.member_id))
            return
        if group.is_(PREPARING):
            self._update_member_and_rebalance(group, member, req, session, rebalance, now, reply)
        elif group.is_(COMPLETING):
            if member.matches(req.protocols):
                # the member lost the join response: send it again
                reply.resolve(self._join_result(group, member))
            else:
                self._update_member_and_rebalance(group, member, req, session, rebalance, now, reply)
        elif group.is_(STABLE):
            if member.member_id == group.leader or not member.matches(req.protocols):
                self._update_member_and_rebalance(group, member, req, session, rebalance, now, reply)
            else:
                member.heartbeat_deadline = now + member.session_timeout
                reply.resolve(self._join_result(group, member, with_members=False))
        else:
            reply.resolve(JoinResult(Err.UNKNOWN_MEMBER_ID, req.member_id))

    def _join_result(self, group: Group, member: Member, *, with_members: bool = True) -> JoinResult:
        is_leader = member.member_id == group.leader
        return JoinResult(
            Err.NONE,
            member.member_id,
            group.generation,
            group.protocol_type,
            group.protocol_name,
            group.leader or "",
            group.joined_members() if (is_leader and with_members) else (),
        )

    def _add_member_and_rebalance(
        self,
        group: Group,
        member_id: str,
        req: JoinRequest,
        session: float,
        rebalance: float,
        now: float,
        reply: Reply[JoinResult],
    ) -> None:
        member = Member(
            member_id=member_id,
            group_instance_id=req.group_instance_id,
            client_id=req.client_id,
            client_host=req.client_host,
            session_timeout=session,
            rebalance_timeout=rebalance,
            protocol_type=req.protocol_type,
            protocols=[(n, bytes(m)) for n, m in req.protocols],
            heartbeat_deadline=now + session,
            join_reply=reply,
            is_new=True,
        )
        if group.is_(PREPARING) and group.generation == 0:
            group.new_member_added = True  # a brand-new group waits a little longer for company
        if not group.members:
            group.protocol_type = req.protocol_type
        group.pending_members.pop(member_id, None)
        group.members[member_id] = member
        if req.group_instance_id:
            group.static_members[req.group_instance_id] = member_id
        if group.leader is None:
            group.leader = member_id
        self._maybe_prepare_rebalance(group, now, f"member {member_id} joined")
        self._try_complete_join(group, now)

    def _update_member_and_rebalance(
        self,
        group: Group,
        member: Member,
        req: JoinRequest,
        session: float,
        rebalance: float,
        now: float,
        reply: Reply[JoinResult],
    ) -> None:
        if member.join_reply is not None:
            # a second JoinGroup while the first still waits: that client gave up on the first
            member.join_reply.resolve(JoinResult(Err.REBALANCE_IN_PROGRESS, member.member_id))
        member.protocols = [(n, bytes(m)) for n, m in req.protocols]
        member.protocol_type = req.protocol_type
        member.session_timeout = session
        member.rebalance_timeout = rebalance
        member.client_id = req.client_id
        member.client_host = req.client_host
        member.join_reply = reply
        self._maybe_prepare_rebalance(group, now, f"member {member.member_id} rejoined")
        self._try_complete_join(group, now)

    def _replace_static_member(
        self,
        group: Group,
        old_id: str,
        new_id: str,
        req: JoinRequest,
        session: float,
        rebalance: float,
        now: float,
        reply: Reply[JoinResult],
    ) -> None:
        member = group.members[old_id]
        if member.join_reply is not None:
            member.join_reply.resolve(JoinResult(Err.FENCED_INSTANCE_ID, old_id))
            member.join_reply = None
        if member.sync_reply is not None:
            member.sync_reply.resolve(SyncResult(Err.FENCED_INSTANCE_ID))
            member.sync_reply = None
        del group.members[old_id]
        member.member_id = new_id
        group.members[new_id] = member
        group.static_members[req.group_instance_id or ""] = new_id
        if group.leader == old_id:
            group.leader = new_id
        if old_id in group.pending_sync:
            group.pending_sync.discard(old_id)
            group.pending_sync.add(new_id)
        log.info("static_member_replaced", group=group.group_id, instance=req.group_instance_id, old=old_id, new=new_id)
        if group.is_(STABLE):
            saved = member.protocols
            member.protocols = [(n, bytes(m)) for n, m in req.protocols]
            if group.select_protocol() == group.protocol_name:
                member.session_timeout = session
                member.rebalance_timeout = rebalance
                member.client_id = req.client_id
                member.client_host = req.client_host
                member.heartbeat_deadline = now + session
                self._dirty.add(group.group_id)
                is_leader = new_id == group.leader
                reply.resolve(
                    JoinResult(
                        Err.NONE,
                        new_id,
                        group.generation,
                        group.protocol_type,
                        group.protocol_name,
                        group.leader or "",
                        group.joined_members() if is_leader else (),
                        skip_assignment=is_leader,
                    )
                )
                return
            member.protocols = saved
        self._update_member_and_rebalance(group, member, req, session, rebalance, now, reply)

    # --- rebalance ------------------------------------------------------------------------------

    def _set_state(self, group: Group, state: GroupState, now: float) -> None:
        group.state = state
        group.state_since = now

    def _maybe_prepare_rebalance(self, group: Group, now: float, reason: str) -> None:
        if group.is_(STABLE, COMPLETING, EMPTY):
            self._prepare_rebalance(group, now, reason)

    def _prepare_rebalance(self, group: Group, now: float, reason: str) -> None:
        if group.is_(COMPLETING):
            for m in group.members.values():
                m.assignment = b""
                if m.sync_reply is not None:
                    m.sync_reply.resolve(SyncResult(Err.REBALANCE_IN_PROGRESS))
                    m.sync_reply = None
        group.pending_sync.clear()
        group.sync_deadline = None
        timeout = group.rebalance_timeout()
        delay = self.config.initial_rebalance_delay
        if group.is_(EMPTY) and delay > 0:
            group.in_initial_delay = True
            group.join_deadline = now + delay
            group.initial_remaining = max(timeout - delay, 0.0)
            group.new_member_added = False
        else:
            group.in_initial_delay = False
            group.join_deadline = now + timeout
        self._set_state(group, PREPARING, now)
        log.info(
            "rebalance_started",
            group=group.group_id,
            generation=group.generation,
            members=len(group.members),
            reason=reason,
        )

    def _try_complete_join(self, group: Group, now: float) -> None:
        if group.is_(PREPARING) and not group.in_initial_delay and group.has_all_members_joined():
            self._complete_join(group, now)

    def _complete_join(self, group: Group, now: float) -> None:
        for m in list(group.members.values()):
            if not m.awaiting_join:
                log.info("member_removed", group=group.group_id, member=m.member_id, reason="did not rejoin in time")
                self._detach(group, m, Err.UNKNOWN_MEMBER_ID)
        group.pending_members.clear()
        group.join_deadline = None
        group.in_initial_delay = False
        group.new_member_added = False
        group.generation += 1
        if not group.members:
            group.protocol_name = None
            group.leader = None
            self._set_state(group, EMPTY, now)
            self._dirty.add(group.group_id)
            log.info("group_empty", group=group.group_id, generation=group.generation)
            return
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.protocol_name = group.select_protocol()
        self._set_state(group, COMPLETING, now)
        everyone = group.joined_members()
        for m in group.members.values():
            reply = m.join_reply
            m.join_reply = None
            m.is_new = False
            m.heartbeat_deadline = now + m.session_timeout
            assert reply is not None
            is_leader = m.member_id == group.leader
            reply.resolve(
                JoinResult(
                    Err.NONE,
                    m.member_id,
                    group.generation,
                    group.protocol_type,
                    group.protocol_name,
                    group.leader or "",
                    everyone if is_leader else (),
                )
            )
        group.pending_sync = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout()
        log.info(
            "rebalance_joined",
            group=group.group_id,
            generation=group.generation,
            protocol=group.protocol_name,
            members=len(group.members),
            leader=group.leader,
        )

    def _detach(self, group: Group, member: Member, error: int) -> None:
        """Take a member out of the group, answering its waiting requests; no state change."""
        if member.join_reply is not None:
            member.join_reply.resolve(JoinResult(error, member.member_id))
            member.join_reply = None
        if member.sync_reply is not None:
            member.sync_reply.resolve(SyncResult(error))
            member.sync_reply = None
        group.members.pop(member.member_id, None)
        if member.group_instance_id and group.static_members.get(member.group_instance_id) == member.member_id:
            del group.static_members[member.group_instance_id]
        group.pending_sync.discard(member.member_id)
        if group.leader == member.member_id:
            group.leader = next(iter(group.members), None)

    def _remove_member(self, group: Group, member: Member, now: float, reason: str) -> None:
        log.info("member_removed", group=group.group_id, member=member.member_id, reason=reason)
        self._detach(group, member, Err.UNKNOWN_MEMBER_ID)
        if group.is_(STABLE, COMPLETING):
            self._prepare_rebalance(group, now, f"member {member.member_id} removed: {reason}")
            self._try_complete_join(group, now)
        elif group.is_(PREPARING):
            self._try_complete_join(group, now)

    def _validate_member(self, group: Group, member_id: str, instance_id: str | None) -> int:
        if instance_id:
            owner = group.static_members.get(instance_id)
            if owner is None:
                return Err.UNKNOWN_MEMBER_ID
            if owner != member_id:
                return Err.FENCED_INSTANCE_ID
        elif member_id not in group.members:
            return Err.UNKNOWN_MEMBER_ID
        return Err.NONE

    # --- SyncGroup, Heartbeat, LeaveGroup --------------------------------------------------------

    def sync(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Mapping[str, bytes],
        now: float,
    ) -> Reply[SyncResult]:
        reply: Reply[SyncResult] = Reply()
        error = self._sync_error(group_id, generation, member_id, instance_id, protocol_type, protocol_name)
        if error:
            reply.resolve(SyncResult(error))
            return reply
        group = self.groups[group_id]
        member = group.members[member_id]
        member.heartbeat_deadline = now + member.session_timeout
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_deadline = None
        if group.is_(STABLE):
            reply.resolve(SyncResult(Err.NONE, member.assignment, group.protocol_type, group.protocol_name))
            return reply
        # CompletingRebalance: wait for the leader's assignment
        if member.sync_reply is not None:
            member.sync_reply.resolve(SyncResult(Err.REBALANCE_IN_PROGRESS))
        member.sync_reply = reply
        if member_id == group.leader:
            for m in group.members.values():
                m.assignment = bytes(assignments.get(m.member_id, b""))
            self._set_state(group, STABLE, now)
            self._dirty.add(group_id)
            for m in group.members.values():
                if m.sync_reply is not None:
                    m.sync_reply.resolve(SyncResult(Err.NONE, m.assignment, group.protocol_type, group.protocol_name))
                    m.sync_reply = None
            log.info("group_stable", group=group_id, generation=group.generation, members=len(group.members))
        return reply

    def _sync_error(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> int:
        if not group_id:
            return Err.INVALID_GROUP_ID
        group = self.groups.get(group_id)
        if group is None:
            return Err.UNKNOWN_MEMBER_ID
        if group.is_(DEAD):
            return Err.COORDINATOR_NOT_AVAILABLE
        error = self._validate_member(group, member_id, instance_id)
        if error:
            return error
        if generation != group.generation:
            return Err.ILLEGAL_GENERATION
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return Err.INCONSISTENT_GROUP_PROTOCOL
        if group.is_(EMPTY):
            return Err.UNKNOWN_MEMBER_ID
        if group.is_(PREPARING):
            return Err.REBALANCE_IN_PROGRESS
        return Err.NONE

    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None, now: float) -> int:
        if not group_id:
            return Err.INVALID_GROUP_ID
        group = self.groups.get(group_id)
        if group is None:
            return Err.UNKNOWN_MEMBER_ID
        if group.is_(DEAD):
            return Err.COORDINATOR_NOT_AVAILABLE
        if group.is_(EMPTY):
            return Err.UNKNOWN_MEMBER_ID
        error = self._validate_member(group, member_id, instance_id)
        if error:
            return error
        if generation != group.generation:
            return Err.ILLEGAL_GENERATION
        member = group.members[member_id]
        member.heartbeat_deadline = now + member.session_timeout
        return Err.REBALANCE_IN_PROGRESS if group.is_(PREPARING) else Err.NONE

    def leave(self, group_id: str, members: list[tuple[str, str | None]], now: float) -> LeaveResult:
        """`members`: (member id, group instance id) pairs; v0-2 send one with no instance id."""
        if not group_id:
            return LeaveResult(Err.INVALID_GROUP_ID)
        group = self.groups.get(group_id)
        if group is None:
            return LeaveResult(
                Err.NONE, tuple(LeaveOutcome(mid, iid, Err.UNKNOWN_MEMBER_ID) for mid, iid in members)
            )
        if group.is_(DEAD):
            return LeaveResult(Err.COORDINATOR_NOT_AVAILABLE)
        outcomes = []
        for member_id, instance_id in members:
            error = Err.NONE
            if instance_id:
                owner = group.static_members.get(instance_id)
                if owner is None:
                    error = Err.UNKNOWN_MEMBER_ID
                elif member_id and member_id != owner:
                    error = Err.FENCED_INSTANCE_ID
                else:
                    self._remove_member(group, group.members[owner], now, "left the group")
            elif member_id in group.pending_members:
                del group.pending_members[member_id]
                self._try_complete_join(group, now)
            elif member_id in group.members:
                self._remove_member(group, group.members[member_id], now, "left the group")
            else:
                error = Err.UNKNOWN_MEMBER_ID
            outcomes.append(LeaveOutcome(member_id, instance_id, error))
        return LeaveResult(Err.NONE, tuple(outcomes))

    # --- offsets --------------------------------------------------------------------------------

    def validate_commit(
        self, group_id: str, generation: int, member_id: str, instance_id: str | None, now: float
    ) -> int:
        """Whether an OffsetCommit may be applied; creates the group for a simple commit."""
        group = self.groups.get(group_id)
        if group is None:
            if generation >= 0 or member_id or instance_id:
                return Err.ILLEGAL_GENERATION
            group = Group(group_id, state_since=now)
            self.groups[group_id] = group
        if group.is_(DEAD):
            return Err.COORDINATOR_NOT_AVAILABLE
        if generation >= 0 or member_id or instance_id:
            error = self._validate_member(group, member_id, instance_id)
            if error:
                return error
            if generation != group.generation:
                return Err.ILLEGAL_GENERATION
        elif not group.is_(EMPTY):
            return Err.UNKNOWN_MEMBER_ID  # simple commits only while nobody uses group management
        if group.is_(COMPLETING):
            return Err.REBALANCE_IN_PROGRESS
        member = group.members.get(member_id)
        if member is not None:
            member.heartbeat_deadline = now + member.session_timeout
        if group.is_(EMPTY):
            group.state_since = now  # a committing standalone consumer keeps its offsets alive
        return Err.NONE

    @staticmethod
    def partition_commit_error(metadata: str | None) -> int:
        if metadata is not None and len(metadata.encode()) > MAX_METADATA_BYTES:
            return Err.OFFSET_METADATA_TOO_LARGE
        return Err.NONE

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None
    ) -> list[tuple[TopicPartition, OffsetEntry | None]]:
        """Committed offsets; None for partitions without one. partitions=None: all committed."""
        if partitions is None:
            return sorted(self.offsets.partitions(group_id).items())
        return [(tp, self.offsets.get(group_id, tp)) for tp in partitions]

    def delete_groups(self, group_ids: Iterable[str], now: float) -> dict[str, int]:
        results: dict[str, int] = {}
        for gid in group_ids:
            group = self.groups.get(gid)
            if group is None or group.is_(DEAD):
                results[gid] = Err.GROUP_ID_NOT_FOUND
            elif not group.is_(EMPTY):
                results[gid] = Err.NON_EMPTY_GROUP
            else:
                self._drop_group(group, now, "deleted")
                results[gid] = Err.NONE
        return results

    def _drop_group(self, group: Group, now: float, reason: str) -> None:
        self._set_state(group, DEAD, now)
        del self.groups[group.group_id]
        dropped = self.offsets.drop_group(group.group_id)
        self._offset_tombstones.extend((group.group_id, tp) for tp in dropped)
        self._dirty.add(group.group_id)
        log.info("group_removed", group=group.group_id, offsets=len(dropped), reason=reason)

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> tuple[int, dict[TopicPartition, int]]:
        """OffsetDelete: (group error, per-partition errors). Deleted offsets leave the cache now
        and their tombstones go out with the next `take_changes`."""
        if not group_id:
            return Err.INVALID_GROUP_ID, {}
        group = self.groups.get(group_id)
        if group is None or group.is_(DEAD):
            return Err.GROUP_ID_NOT_FOUND, {}
        subscribed: set[str] | None = set()
        if not group.is_(EMPTY):
            if group.protocol_type != "consumer":
                return Err.NON_EMPTY_GROUP, {}
            subscribed = self._subscribed_topics(group)
        results: dict[TopicPartition, int] = {}
        deleted = []
        for tp in partitions:
            if subscribed is None or tp[0] in subscribed:
                results[tp] = Err.GROUP_SUBSCRIBED_TO_TOPIC
            else:
                results[tp] = Err.NONE
                if self.offsets.get(group_id, tp) is not None:
                    deleted.append(tp)
        self.offsets.remove(group_id, deleted)
        self._offset_tombstones.extend((group_id, tp) for tp in deleted)
        return Err.NONE, results

    @staticmethod
    def _subscribed_topics(group: Group) -> set[str] | None:
        """Topics the consumer group's members subscribe to; None when unknown (treat all as used)."""
        if group.protocol_name is None:
            return None
        topics: set[str] = set()
        for m in group.members.values():
            sub = consumer_subscription_topics(m.metadata(group.protocol_name))
            if sub is None:
                return None
            topics |= sub
        return topics

    # --- views ----------------------------------------------------------------------------------

    def describe(self, group_id: str) -> GroupDescription:
        group = self.groups.get(group_id)
        if group is None:
            return GroupDescription(group_id, Err.NONE, DEAD.value, "", "", ())
        stable = group.is_(STABLE)
        members = tuple(
            MemberDescription(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(group.protocol_name) if stable else b"",
                m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        return GroupDescription(
            group_id,
            Err.NONE,
            group.state.value,
            group.protocol_type or "",
            (group.protocol_name or "") if stable else "",
            members,
        )

    def list_groups(self, states: Iterable[str] = ()) -> list[ListedGroup]:
        wanted = {s.lower() for s in states}
        return [
            ListedGroup(g.group_id, g.protocol_type or "", g.state.value)
            for g in self.groups.values()
            if not g.is_(DEAD) and (not wanted or g.state.value.lower() in wanted)
        ]

    # --- timers ---------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Fire every deadline that has passed by `now`."""
        for group in list(self.groups.values()):
            self._tick_group(group, now)

    def _tick_group(self, group: Group, now: float) -> None:
        expired = [mid for mid, deadline in group.pending_members.items() if now >= deadline]
        for mid in expired:
            del group.pending_members[mid]
        if expired:
            self._try_complete_join(group, now)
        for m in list(group.members.values()):
            if m.member_id in group.members and now >= m.heartbeat_deadline and not (m.awaiting_join or m.awaiting_sync):
                self._remove_member(group, m, now, "session timeout")
        if group.is_(PREPARING) and group.join_deadline is not None and now >= group.join_deadline:
            if group.in_initial_delay and group.new_member_added and group.initial_remaining > 0:
                delay = min(self.config.initial_rebalance_delay, group.initial_remaining)
                group.initial_remaining = max(group.initial_remaining - delay, 0.0)
                group.join_deadline = now + delay
                group.new_member_added = False
            else:
                self._complete_join(group, now)
        if group.sync_deadline is not None and now >= group.sync_deadline:
            group.sync_deadline = None
            if group.is_(COMPLETING, STABLE):
                for mid in list(group.pending_sync):
                    member = group.members.get(mid)
                    if member is not None and mid in group.pending_sync:
                        self._remove_member(group, member, now, "no SyncGroup within the rebalance timeout")
        if group.is_(EMPTY) and not group.members and now - group.state_since >= self.config.offsets_retention:
            self._drop_group(group, now, "expired")

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for g in self.groups.values():
            deadlines.extend(g.pending_members.values())
            deadlines.extend(
                m.heartbeat_deadline for m in g.members.values() if not (m.awaiting_join or m.awaiting_sync)
            )
            if g.is_(PREPARING) and g.join_deadline is not None:
                deadlines.append(g.join_deadline)
            if g.sync_deadline is not None:
                deadlines.append(g.sync_deadline)
            if g.is_(EMPTY) and not g.members:
                deadlines.append(g.state_since + self.config.offsets_retention)
        return min(deadlines, default=None)
