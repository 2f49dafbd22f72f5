"""Topic names, filters, wildcard matching, $-topics, and the subscription trie with shared groups."""

import pytest

from appliance.mqtt.codec import TopicFilterInvalid, TopicNameInvalid
from appliance.mqtt.topics import (
    SubscriptionTrie,
    parse_shared,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)


@pytest.mark.parametrize("f,t,expected", [
    ("a/b/c", "a/b/c", True), ("a/b/c", "a/b", False), ("a/+/c", "a/x/c", True), ("a/+/c", "a/x/y/c", False),
    ("a/#", "a", True), ("a/#", "a/b/c", True), ("#", "a/b", True), ("+", "a", True), ("+", "a/b", False),
    ("+/+", "/a", True), ("/+", "/a", True), ("a/+", "a/", True), ("+/#", "a", True),
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$SYS/#", "$SYS/x", True), ("$SYS/+", "$SYS/x", True),
    ("a/b", "A/b", False),
])
def test_matching(f, t, expected):
    assert topic_matches(f, t) is expected
    trie = SubscriptionTrie()
    trie.add(f, "c", 1)
    plain, _ = trie.match(t)
    assert (plain == [("c", 1)]) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a/b+", "+a", "a\x00"])
def test_invalid_filters(bad):
    with pytest.raises(TopicFilterInvalid):
        validate_topic_filter(bad)


@pytest.mark.parametrize("bad", ["", "a/+", "a/#", "x\x00"])
def test_invalid_names(bad):
    with pytest.raises(TopicNameInvalid):
        validate_topic_name(bad)


def test_shared_filter_parsing():
    assert parse_shared("$share/g1/a/+/c") == ("g1", "a/+/c")
    assert parse_shared("a/b") is None
    for bad in ("$share/g1", "$share//a", "$share/g+/a", "$share/g/a/#/b"):
        with pytest.raises(TopicFilterInvalid):
            parse_shared(bad)


def test_trie_returns_every_matching_subscriber_once_per_filter():
    trie = SubscriptionTrie()
    trie.add("plant/+/temp", "hmi", "s1")
    trie.add("plant/#", "historian", "s2")
    trie.add("plant/line1/temp", "hmi", "s3")
    trie.add("other/#", "x", "s4")
    plain, groups = trie.match("plant/line1/temp")
    assert sorted(plain) == [("historian", "s2"), ("hmi", "s1"), ("hmi", "s3")]
    assert groups == []
    assert trie.remove("plant/#", "historian")
    assert not trie.remove("plant/#", "historian")
    assert sorted(trie.match("plant/line1/temp")[0]) == [("hmi", "s1"), ("hmi", "s3")]
    assert len(trie) == 3
    assert sorted((f, c) for f, c, _ in trie.filters()) == [("other/#", "x"), ("plant/+/temp", "hmi"),
                                                            ("plant/line1/temp", "hmi")]


def test_trie_prunes_removed_branches():
    trie = SubscriptionTrie()
    for i in range(100):
        trie.add(f"a/{i}/b", "c", i)
    for i in range(100):
        trie.remove(f"a/{i}/b", "c")
    assert len(trie) == 0 and trie._root.children == {}


def test_shared_groups_round_robin_preferring_connected_members():
    trie = SubscriptionTrie()
    for cid in ("w1", "w2", "w3"):
        trie.add("$share/workers/jobs/#", cid, cid)
    trie.add("$share/audit/jobs/#", "a1", "a1")
    _, groups = trie.match("jobs/1")
    assert sorted(g.name for g in groups) == ["audit", "workers"]
    workers = next(g for g in groups if g.name == "workers")
    online = {"w1", "w3"}
    picks = [workers.pick(lambda c: c in online)[0] for _ in range(6)]
    assert picks == ["w1", "w3", "w1", "w3", "w1", "w3"]
    # nobody connected: still delivered to someone (its session queues it)
    assert workers.pick(lambda c: False)[0] in {"w1", "w2", "w3"}
    trie.remove("$share/workers/jobs/#", "w1")
    trie.remove("$share/workers/jobs/#", "w3")
    assert [workers.pick(lambda c: True)[0] for _ in range(2)] == ["w2", "w2"]


def test_dollar_topics_reach_explicit_filters_only():
    trie = SubscriptionTrie()
    trie.add("#", "all", 1)
    trie.add("$share/g/#", "shared", 2)
    trie.add("$SYS/#", "sys", 3)
    plain, groups = trie.match("$SYS/broker/uptime")
    assert plain == [("sys", 3)] and groups == []
