import pytest

from appliance.security.mqtt_filters import intersects, matches, valid_filter, valid_topic_name, within


@pytest.mark.parametrize("flt,topic,expected", [
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/+", "a", False),
    ("a/#", "a", True),  # '#' includes the parent level
    ("a/#", "a/b/c", True),
    ("#", "a/b", True),
    ("#", "$SYS/broker", False),  # wildcards never match $-topics at the first level
    ("+/broker", "$SYS/broker", False),
    ("$SYS/#", "$SYS/broker", True),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("+", "", True),
])
def test_matches(flt, topic, expected):
    assert matches(flt, topic) is expected


@pytest.mark.parametrize("inner,outer,expected", [
    ("uns/acme/plant1/#", "uns/acme/plant1/#", True),
    ("uns/acme/#", "uns/acme/plant1/#", False),  # the example from the spec
    ("uns/acme/plant1/line3/#", "uns/acme/plant1/#", True),
    ("uns/acme/plant1", "uns/acme/plant1/#", True),  # the parent is covered by '#'
    ("uns/acme/+/x", "uns/acme/plant1/#", False),  # '+' reaches other plants
    ("uns/acme/plant1/+", "uns/acme/plant1/+", True),
    ("uns/acme/plant1/+/x", "uns/acme/plant1/+", False),
    ("a/+", "a/#", True),
    ("a/#", "a/+", False),
    ("a/#", "a/+/#", False),  # a/# matches 'a', a/+/# does not
    ("a/+/#", "a/#", True),
    ("a/b", "a/+", True),
    ("a/+", "a/b", False),
    ("#", "#", True),
    ("$SYS/#", "#", False),
    ("+/x", "#", True),
    ("a", "a/b", False),
    ("a/b/c", "a/b", False),
])
def test_within(inner, outer, expected):
    assert within(inner, outer) is expected


@pytest.mark.parametrize("a,b,expected", [
    ("a/#", "a/b/c", True),
    ("a/+/c", "a/b/+", True),
    ("a/b", "a/c", False),
    ("a", "a/#", True),
    ("a", "a/+", False),
    ("uns/acme/#", "uns/acme/plant1/safety/#", True),
    ("uns/acme/plant2/#", "uns/acme/plant1/safety/#", False),
    ("#", "$SYS/#", False),
    ("+/+", "a", False),
])
def test_intersects_is_symmetric(a, b, expected):
    assert intersects(a, b) is expected
    assert intersects(b, a) is expected


def test_validity():
    assert valid_filter("a/+/#") and valid_filter("#") and valid_filter("+")
    assert not valid_filter("a/#/b") and not valid_filter("a/b#") and not valid_filter("a+/b") and not valid_filter("")
    assert valid_topic_name("a/b") and not valid_topic_name("a/+") and not valid_topic_name("a/#")
    assert not valid_topic_name("")
