"""MQTT topic filter algebra (pure): match, containment and intersection, per MQTT 3.1.1/5 §4.7.

- `#` matches its parent level too: `a/#` matches `a`.
- Filters starting with a wildcard never match topics starting with `$` (`#` does not match `$SYS/x`).
- `within(inner, outer)`: every topic `inner` can match is matched by `outer`. Used to decide
  whether a subscription stays inside what a rule allows (`uns/acme/#` is not within
  `uns/acme/plant1/#`).
- `intersects(a, b)`: some topic is matched by both. Used for deny rules: a subscription that
  could receive any denied topic is denied.
"""

from __future__ import annotations


def valid_topic_name(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic and len(topic) <= 65535


def valid_filter(flt: str) -> bool:
    if not flt or "\x00" in flt or len(flt) > 65535:
        return False
    levels = flt.split("/")
    for i, lvl in enumerate(levels):
        if "#" in lvl and (lvl != "#" or i != len(levels) - 1):
            return False
        if "+" in lvl and lvl != "+":
            return False
    return True


def _dollar_guard(f0: str, other0: str) -> bool:
    """True when a wildcard first level faces a `$` first level, which it never matches."""
    return f0 in ("+", "#") and other0.startswith("$") and other0 not in ("+", "#")


def matches(flt: str, topic: str) -> bool:
    """Does the filter match the topic name?"""
    f, t = flt.split("/"), topic.split("/")
    if _dollar_guard(f[0], t[0]):
        return False
    for i, fl in enumerate(f):
        if fl == "#":
            return True
        if i >= len(t):
            return False
        if fl != "+" and fl != t[i]:
            return False
    return len(f) == len(t)


def within(inner: str, outer: str) -> bool:
    """Is every topic matched by `inner` also matched by `outer`?"""
    f, a = inner.split("/"), outer.split("/")
    if _dollar_guard(a[0], f[0]):
        return False
    for i, al in enumerate(a):
        if al == "#":
            return True  # f[:i] is within a[:i], and `#` takes any rest including none
        if i >= len(f):
            return False  # inner matches topics shorter than outer requires
        fl = f[i]
        if fl == "#":
            return False  # inner reaches arbitrary depth (and the parent) where outer is fixed
        if al == "+":
            continue
        if fl != al:  # includes fl == "+" against a literal
            return False
    return len(f) == len(a)


def intersects(a: str, b: str) -> bool:
    """Is there a topic matched by both filters?"""
    x, y = a.split("/"), b.split("/")
    if _dollar_guard(x[0], y[0]) or _dollar_guard(y[0], x[0]):
        return False
    for i in range(max(len(x), len(y))):
        if i >= len(x) or i >= len(y):
            longer = x if len(x) > len(y) else y
            return longer[i] == "#"  # `p/#` matches its parent `p`
        xl, yl = x[i], y[i]
        if xl == "#" or yl == "#":
            return True
        if xl == "+" or yl == "+":
            continue
        if xl != yl:
            return False
    return True
