"""Topic names, topic filters, and the subscription trie that routes a PUBLISH.

Rules (spec 4.7): levels split on "/"; "+" matches one level, "#" the rest (including the parent
level, so "a/#" matches "a"); wildcards must fill a whole level, "#" only last. Topics starting
with "$" are not matched by a filter whose first level is a wildcard. Shared subscriptions
"$share/{group}/{filter}" deliver each message to one member of the group (round robin,
preferring members whose client is connected).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from appliance.mqtt.codec.errors import TopicFilterInvalid, TopicNameInvalid

SHARE_PREFIX = "$share/"
_MATCH_CACHE_LIMIT = 10_000  # distinct topics whose subscribers a trie remembers


def validate_topic_name(topic: str) -> None:
    if not topic:
        raise TopicNameInvalid("topic name is empty")
    if "+" in topic or "#" in topic:
        raise TopicNameInvalid(f"topic name {topic!r} contains a wildcard")
    if "\x00" in topic:
        raise TopicNameInvalid("topic name contains U+0000")
    if len(topic.encode("utf-8")) > 0xFFFF:
        raise TopicNameInvalid("topic name longer than 65535 bytes")


def validate_topic_filter(topic_filter: str) -> None:
    if not topic_filter:
        raise TopicFilterInvalid("topic filter is empty")
    if "\x00" in topic_filter:
        raise TopicFilterInvalid("topic filter contains U+0000")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicFilterInvalid(f"'#' must be the whole last level in {topic_filter!r}")
        if "+" in level and level != "+":
            raise TopicFilterInvalid(f"'+' must be a whole level in {topic_filter!r}")


def parse_shared(topic_filter: str) -> tuple[str, str] | None:
    """("group", "inner/filter") for a shared subscription, None for a plain filter."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    rest = topic_filter[len(SHARE_PREFIX):]
    group, sep, inner = rest.partition("/")
    if not sep or not group or "+" in group or "#" in group or not inner:
        raise TopicFilterInvalid(f"shared subscription {topic_filter!r} must be $share/GROUP/FILTER")
    validate_topic_filter(inner)
    return group, inner


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a (non-shared) filter matches a topic name."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


@dataclass
class SharedGroup:
    """Members of one $share group on one filter, with a round-robin cursor."""

    name: str
    members: dict[str, Any] = field(default_factory=dict)  # client id -> subscription value
    cursor: int = 0

    def pick(self, is_connected: Callable[[str], bool]) -> tuple[str, Any] | None:
        """The next member in turn, skipping disconnected ones unless no member is connected."""
        if not self.members:
            return None
        ids = list(self.members)
        n = len(ids)
        for step in range(n):
            cid = ids[(self.cursor + step) % n]
            if is_connected(cid):
                self.cursor = (self.cursor + step + 1) % n
                return cid, self.members[cid]
        cid = ids[self.cursor % n]
        self.cursor = (self.cursor + 1) % n
        return cid, self.members[cid]


class _Node:
    __slots__ = ("children", "subs", "shared")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subs: dict[str, Any] = {}  # client id -> value
        self.shared: dict[str, SharedGroup] = {}


class SubscriptionTrie:
    """Filters indexed level by level; a lookup walks only the branches a topic can match."""

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0
        # topic -> match() result, while the subscriptions do not change: devices repeat topics
        self._matches: dict[str, tuple[list[tuple[str, Any]], list[SharedGroup]]] = {}

    def __len__(self) -> int:
        return self._count

    def _node(self, topic_filter: str, create: bool) -> _Node | None:
        node = self._root
        for level in topic_filter.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                if not create:
                    return None
                nxt = node.children[level] = _Node()
            node = nxt
        return node

    def add(self, topic_filter: str, client_id: str, value: Any) -> bool:
        """Add or replace; True when the subscription is new. `topic_filter` may be $share/..."""
        self._matches.clear()
        shared = parse_shared(topic_filter)
        if shared is None:
            node = self._node(topic_filter, True)
            assert node is not None
            new = client_id not in node.subs
            node.subs[client_id] = value
        else:
            group_name, inner = shared
            node = self._node(inner, True)
            assert node is not None
            group = node.shared.get(group_name)
            if group is None:
                group = node.shared[group_name] = SharedGroup(group_name)
            new = client_id not in group.members
            group.members[client_id] = value
        self._count += new
        return new

    def remove(self, topic_filter: str, client_id: str) -> bool:
        self._matches.clear()
        shared = parse_shared(topic_filter)
        inner = topic_filter if shared is None else shared[1]
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in inner.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                return False
            path.append((node, level))
            node = nxt
        if shared is None:
            removed = node.subs.pop(client_id, None) is not None
        else:
            group = node.shared.get(shared[0])
            removed = group is not None and group.members.pop(client_id, None) is not None
            if group is not None and not group.members:
                del node.shared[shared[0]]
        if removed:
            self._count -= 1
            # prune empty branches so the trie does not grow with churn
            for parent, level in reversed(path):
                child = parent.children[level]
                if child.children or child.subs or child.shared:
                    break
                del parent.children[level]
        return removed

    def match(self, topic: str) -> tuple[list[tuple[str, Any]], list[SharedGroup]]:
        """(plain subscriptions as (client id, value), shared groups) whose filter matches `topic`.
        The lists may be shared with later calls: read them, do not change them."""
        hit = self._matches.get(topic)
        if hit is not None:
            return hit
        if len(self._matches) >= _MATCH_CACHE_LIMIT:
            self._matches.clear()
        plain: list[tuple[str, Any]] = []
        groups: list[SharedGroup] = []
        levels = topic.split("/")
        dollar = topic.startswith("$")
        self._walk(self._root, levels, 0, plain, groups, dollar)
        self._matches[topic] = (plain, groups)
        return plain, groups

    def _walk(self, node: _Node, levels: list[str], i: int, plain: list, groups: list, dollar: bool) -> None:
        # "#" matches here and everything below, including the parent level itself.
        wild_ok = not (dollar and i == 0)
        hash_node = node.children.get("#") if wild_ok else None
        if hash_node is not None:
            plain.extend(hash_node.subs.items())
            groups.extend(hash_node.shared.values())
        if i == len(levels):
            plain.extend(node.subs.items())
            groups.extend(node.shared.values())
            return
        exact = node.children.get(levels[i])
        if exact is not None:
            self._walk(exact, levels, i + 1, plain, groups, dollar)
        if wild_ok:
            plus = node.children.get("+")
            if plus is not None:
                self._walk(plus, levels, i + 1, plain, groups, dollar)

    def filters(self) -> Iterator[tuple[str, str, Any]]:
        """Every (filter, client id, value), shared ones as $share/group/filter. For admin views."""
        stack: list[tuple[str, _Node]] = [("", self._root)]
        while stack:
            prefix, node = stack.pop()
            for cid, value in node.subs.items():
                yield prefix, cid, value
            for group in node.shared.values():
                for cid, value in group.members.items():
                    yield f"{SHARE_PREFIX}{group.name}/{prefix}", cid, value
            for level, child in node.children.items():
                stack.append((f"{prefix}/{level}" if node is not self._root else level, child))
