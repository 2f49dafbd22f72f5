"""Data of the classic consumer group coordinator: states, members, groups, replies, records.

Pure data and small pure helpers; the state machine lives in `group_manager.py`.
Times are monotonic seconds (`now`), as the manager receives them; the persisted records carry
wall-clock milliseconds, converted at the boundary by `groups.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from appliance.kafka.error_codes import ErrorCode

# The Kafka error codes the coordinator answers with (IntEnum: members compare equal to ints).
Err = ErrorCode


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


T = TypeVar("T")


class Reply(Generic[T]):
    """A one-shot answer to a request: resolved at once, or later (a JoinGroup or SyncGroup
    long poll). The manager resolves it synchronously; an adapter waits on it by registering
    a callback (e.g. one that sets a trio.Event). Resolving twice keeps the first answer."""

    __slots__ = ("result", "_callbacks")

    def __init__(self, result: T | None = None) -> None:
        self.result: T | None = result
        self._callbacks: list[Callable[[T], None]] = []

    @property
    def done(self) -> bool:
        return self.result is not None

    def resolve(self, value: T) -> None:
        if self.result is not None:
            return
        self.result = value
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(value)

    def add_done_callback(self, cb: Callable[[T], None]) -> None:
        if self.result is not None:
            cb(self.result)
        else:
            self._callbacks.append(cb)


@dataclass(frozen=True, slots=True)
class JoinedMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    error: int
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: tuple[JoinedMember, ...] = ()  # only the leader gets them
    skip_assignment: bool = False  # a static leader rejoined a stable group (JoinGroup v9)


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: int
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveOutcome:
    member_id: str
    group_instance_id: str | None
    error: int


@dataclass(frozen=True, slots=True)
class LeaveResult:
    error: int  # group-level
    members: tuple[LeaveOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """What a JoinGroup asks, independent of the wire version."""

    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int  # -1 (v0) means "same as the session timeout"
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    require_known_member_id: bool  # JoinGroup v4+: a member without an id gets MEMBER_ID_REQUIRED
    reason: str | None = None


@dataclass(eq=False)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout: float  # seconds
    rebalance_timeout: float  # seconds
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    heartbeat_deadline: float = 0.0
    join_reply: Reply[JoinResult] | None = None
    sync_reply: Reply[SyncResult] | None = None
    is_new: bool = False  # joined during the current rebalance

    @property
    def awaiting_join(self) -> bool:
        return self.join_reply is not None and not self.join_reply.done

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_reply is not None and not self.sync_reply.done

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str | None) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def matches(self, protocols: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]) -> bool:
        return [(n, bytes(m)) for n, m in protocols] == [(n, bytes(m)) for n, m in self.protocols]

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError("member supports none of the candidate protocols")


@dataclass(eq=False)
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)  # join order
    static_members: dict[str, str] = field(default_factory=dict)  # group.instance.id -> member id
    pending_members: dict[str, float] = field(default_factory=dict)  # MEMBER_ID_REQUIRED -> deadline
    pending_sync: set[str] = field(default_factory=set)  # joined the generation, not yet synced
    join_deadline: float | None = None
    in_initial_delay: bool = False
    initial_remaining: float = 0.0
    new_member_added: bool = False
    sync_deadline: float | None = None
    state_since: float = 0.0  # monotonic time of the last state change (Empty groups age out)

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    def has_all_members_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def rebalance_timeout(self) -> float:
        return max((m.rebalance_timeout for m in self.members.values()), default=0.0)

    def candidate_protocols(self) -> set[str]:
        members = list(self.members.values())
        if not members:
            return set()
        common = set(members[0].protocol_names())
        for m in members[1:]:
            common &= set(m.protocol_names())
        return common

    def supports_protocols(self, protocol_type: str, protocols: tuple[tuple[str, bytes], ...]) -> bool:
        names = {n for n, _ in protocols}
        if self.state is GroupState.EMPTY or not self.members:
            return bool(protocol_type) and bool(names)
        return protocol_type == self.protocol_type and bool(names & self.candidate_protocols())

    def select_protocol(self) -> str:
        """The protocol all members support that most members rank first (ties: leader's order)."""
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for m in self.members.values():
            choice = m.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        best = max(votes.values())
        tied = {name for name, n in votes.items() if n == best}
        leader = self.members.get(self.leader or "") or next(iter(self.members.values()))
        for name in leader.protocol_names():
            if name in tied:
                return name
        return sorted(tied)[0]

    def joined_members(self) -> tuple[JoinedMember, ...]:
        return tuple(
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        )


# --- persisted group record ---------------------------------------------------------------------

GROUP_RECORD_VERSION = 1


def group_record(group: Group, state_ts_ms: int) -> dict[str, Any]:
    """The msgpack map stored under namespace "groups", key = group id.

    Stored when a group becomes Stable (with its assignment) or Empty, so that after a restart
    the members of a stable group keep heartbeating without a rebalance, and a group whose
    members are gone still answers DescribeGroups with its last generation.
    """
    stable = group.state is GroupState.STABLE
    return {
        "v": GROUP_RECORD_VERSION,
        "protocol_type": group.protocol_type,
        "protocol": group.protocol_name,
        "generation": group.generation,
        "leader": group.leader if stable else None,
        "state_ts": state_ts_ms,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "session_timeout": m.session_timeout,
                "rebalance_timeout": m.rebalance_timeout,
                "protocols": [[n, bytes(meta)] for n, meta in m.protocols],
                "assignment": bytes(m.assignment),
            }
            for m in group.members.values()
        ]
        if stable
        else [],
    }


def group_from_record(group_id: str, rec: dict[str, Any], now: float, state_since: float) -> Group:
    """Rebuild a group at load: Stable with its members (whose session timers start now), or Empty."""
    if rec.get("v") != GROUP_RECORD_VERSION:
        raise ValueError(f"group record version {rec.get('v')!r} not supported")
    group = Group(
        group_id=group_id,
        generation=int(rec["generation"]),
        protocol_type=rec.get("protocol_type"),
        protocol_name=rec.get("protocol"),
        state_since=state_since,
    )
    for m in rec.get("members") or []:
        member = Member(
            member_id=m["member_id"],
            group_instance_id=m.get("group_instance_id"),
            client_id=m.get("client_id", ""),
            client_host=m.get("client_host", ""),
            session_timeout=float(m["session_timeout"]),
            rebalance_timeout=float(m["rebalance_timeout"]),
            protocol_type=group.protocol_type or "",
            protocols=[(n, bytes(meta)) for n, meta in m["protocols"]],
            assignment=bytes(m.get("assignment") or b""),
            heartbeat_deadline=now + float(m["session_timeout"]),
        )
        group.members[member.member_id] = member
        if member.group_instance_id:
            group.static_members[member.group_instance_id] = member.member_id
    if group.members:
        group.state = GroupState.STABLE
        leader = rec.get("leader")
        group.leader = leader if leader in group.members else next(iter(group.members))
    else:
        group.protocol_name = None
    return group
