"""Zone/conduit access rules (IEC 62443 style): parsing, a pure evaluator, and a denial audit log.

Who / where / what / how much:
- who: the certificate Identity (zone, id) — or, on a listener without client certificates, the
  identity the adapter builds for it;
- where: zones, and conduits from a zone to a listener (by name);
- what: operations on resources: MQTT topics (publish) and filters (subscribe), Kafka topics,
  consumer groups, the cluster (admin);
- how much: limits of the conduit that allowed (max QoS, messages per second, payload size).

Evaluation (`decide`), all pure:
1. Deny rules, in file order: the first whose zone, listener, id, operation and resource apply
   denies. For a subscription, a deny applies when the filter *intersects* the denied filters
   (the client could receive a denied topic).
2. Conduits from the client's zone to the listener, in file order: the first that allows the
   operation on the resource decides, and its limits apply. A subscription filter must lie
   *within* one allowed filter (conservative: unions of filters are not combined).
3. Otherwise: denied (default deny), with a reason naming what was missing.

Implied operations (as Kafka ACLs do): produce, consume, alter_topic and delete_topic imply
describe on the same topics; consume with a `groups` key implies group_join and group_commit on
those groups.

Resource patterns: `{id}` and `{zone}` are replaced by the client's values (which must be safe
names, see pki.NAME_RE; otherwise the pattern matches nothing). MQTT conduits take topic filters;
Kafka conduits take literals, `"*"` (any), or `{ prefix = "..." }` tables, for topics and groups.
A conduit's operations are either all MQTT (publish, subscribe) or all Kafka.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import parse_size
from appliance.errors import ConfigError
from appliance.security import mqtt_filters as mf
from appliance.security.pki import NAME_RE, Identity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

MQTT_OPS = ("publish", "subscribe")
TOPIC_OPS = ("produce", "consume", "create_topic", "delete_topic", "alter_topic", "describe")
GROUP_OPS = ("group_join", "group_commit")
CLUSTER_OPS = ("admin",)
OPS = MQTT_OPS + TOPIC_OPS + GROUP_OPS + CLUSTER_OPS
KAFKA_OPS = TOPIC_OPS + GROUP_OPS + CLUSTER_OPS
_IMPLIES_DESCRIBE = {"produce", "consume", "alter_topic", "delete_topic"}
_KAFKA_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


class RulesError(ConfigError):
    """An invalid rules file: names the file, the line when known, the rule and key, and the reason."""

    def __init__(self, file: str, line: int | None, where: str, problem: str) -> None:
        super().__init__(f"{file}:{line}" if line else file, where, problem)
        self.file = file
        self.line = line


# --- model


@dataclass(frozen=True)
class Limits:
    max_qos: int | None = None
    msgs_per_s: float | None = None
    max_payload: int | None = None


@dataclass(frozen=True)
class Pattern:
    """One resource pattern. kind: "mqtt" (a topic filter), "literal", "prefix" or "any"."""

    kind: str
    text: str = ""

    def render(self, identity: Identity | None, zone: str) -> str | None:
        """The pattern with {id}/{zone} filled in; None if a value is missing or unsafe."""
        if "{" not in self.text:
            return self.text
        values = {"zone": zone, "id": identity.id if identity else None}
        out = self.text
        for key, val in values.items():
            if "{" + key + "}" in out:
                if val is None or not NAME_RE.fullmatch(val):
                    return None
                out = out.replace("{" + key + "}", val)
        return out

    def spec(self) -> str | dict[str, str]:
        """As written in the rules file (for JSON)."""
        return {"prefix": self.text} if self.kind == "prefix" else ("*" if self.kind == "any" else self.text)

    def __str__(self) -> str:
        if self.kind == "prefix":
            return f"prefix {self.text!r}"
        return "*" if self.kind == "any" else repr(self.text)


@dataclass(frozen=True)
class Zone:
    name: str
    sl_target: int | None = None
    description: str = ""


@dataclass(frozen=True)
class Conduit:
    name: str
    from_zones: tuple[str, ...]
    to: tuple[str, ...]
    allow: tuple[str, ...]  # as written
    topics: tuple[Pattern, ...] = ()
    groups: tuple[Pattern, ...] = ()
    ids: tuple[Pattern, ...] = ()  # empty: any id
    limits: Limits = field(default_factory=Limits)
    description: str = ""
    line: int | None = None

    effective_ops: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ops = set(self.allow)
        if ops & _IMPLIES_DESCRIBE:
            ops.add("describe")
        if "consume" in ops and self.groups:
            ops.update(GROUP_OPS)
        object.__setattr__(self, "effective_ops", frozenset(ops))


@dataclass(frozen=True)
class DenyRule:
    name: str
    from_zones: tuple[str, ...] = ()  # empty: any zone
    to: tuple[str, ...] = ()  # empty: any listener
    ops: tuple[str, ...] = OPS
    topics: tuple[Pattern, ...] | None = None  # None: every topic
    groups: tuple[Pattern, ...] | None = None  # None: every group
    ids: tuple[Pattern, ...] = ()
    description: str = ""
    line: int | None = None


@dataclass(frozen=True)
class Rules:
    zones: Mapping[str, Zone]
    conduits: tuple[Conduit, ...]
    denies: tuple[DenyRule, ...]
    source: str = "<rules>"
    _index: Mapping[tuple[str, str], tuple[Conduit, ...]] = field(default_factory=dict, compare=False, repr=False)

    def conduits_for(self, zone: str, listener: str) -> tuple[Conduit, ...]:
        return self._index.get((zone, listener), ())

    @staticmethod
    def build(zones: Mapping[str, Zone], conduits: Sequence[Conduit], denies: Sequence[DenyRule],
              source: str = "<rules>") -> Rules:
        index: dict[tuple[str, str], list[Conduit]] = {}
        for c in conduits:
            for z in c.from_zones:
                for lst in c.to:
                    index.setdefault((z, lst), []).append(c)
        return Rules(dict(zones), tuple(conduits), tuple(denies), source,
                     {k: tuple(v) for k, v in index.items()})

    @staticmethod
    def empty() -> Rules:
        return Rules.build({}, (), (), "<no rules>")

    def links(self) -> list[dict[str, Any]]:
        """Who reaches what: one entry per (from zone, listener, conduit), in file order, for the
        zones x listeners matrix of the admin API and the console."""
        def text(p: Pattern) -> str:
            return f"{p.text}*" if p.kind == "prefix" else ("*" if p.kind == "any" else p.text)

        return [{"zone": z, "listener": lst, "conduit": c.name, "ops": list(c.allow),
                 "resources": [text(p) for p in c.topics] + [f"group {text(p)}" for p in c.groups],
                 "ids": [text(p) for p in c.ids],
                 "limits": {k: v for k, v in asdict(c.limits).items() if v is not None}}
                for c in self.conduits for z in c.from_zones for lst in c.to]

    def summary(self) -> dict[str, Any]:
        """Plain values for the admin API and the TUI."""
        def lim(x: Limits) -> dict[str, Any]:
            return {k: v for k, v in asdict(x).items() if v is not None}

        return {
            "source": self.source,
            "zones": [{"name": z.name, "sl_target": z.sl_target, "description": z.description}
                      for z in self.zones.values()],
            "conduits": [{"name": c.name, "from": list(c.from_zones), "to": list(c.to), "allow": list(c.allow),
                          "ids": [p.spec() for p in c.ids], "topics": [p.spec() for p in c.topics],
                          "groups": [p.spec() for p in c.groups], "limits": lim(c.limits)} for c in self.conduits],
            "denies": [{"name": d.name, "from": list(d.from_zones), "to": list(d.to), "ops": list(d.ops),
                        "ids": [p.spec() for p in d.ids],
                        "topics": None if d.topics is None else [p.spec() for p in d.topics],
                        "groups": None if d.groups is None else [p.spec() for p in d.groups]} for d in self.denies],
        }


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule_name: str | None  # the conduit that allowed or the deny rule that denied; None: default deny
    reason: str
    limits: Limits | None = None


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    trace: tuple[str, ...]

    def render(self) -> str:
        verdict = "ALLOW" if self.decision.allowed else "DENY"
        lines = [f"{verdict} by {self.decision.rule_name or 'default deny'}: {self.decision.reason}"]
        if self.decision.limits and self.decision.limits != Limits():
            lim = self.decision.limits
            parts = [f"{k}={v}" for k, v in (("max_qos", lim.max_qos), ("msgs_per_s", lim.msgs_per_s),
                                              ("max_payload", lim.max_payload)) if v is not None]
            lines.append("limits: " + ", ".join(parts))
        lines += ["  " + t for t in self.trace]
        return "\n".join(lines)


# --- evaluation


def _resource_kind(op: str) -> str:
    if op in MQTT_OPS:
        return "mqtt"
    if op in TOPIC_OPS:
        return "topic"
    if op in GROUP_OPS:
        return "group"
    return "cluster"


def _kafka_match(p: Pattern, rendered: str, resource: str) -> bool:
    if p.kind == "any":
        return True
    if p.kind == "prefix":
        return resource.startswith(rendered)
    return resource == rendered


def _first_match(patterns: Iterable[Pattern], op: str, resource: str, identity: Identity | None, zone: str,
                 *, deny: bool) -> Pattern | None:
    """The first pattern covering the resource (allow) or touching it (deny)."""
    for p in patterns:
        r = p.render(identity, zone)
        if r is None:
            continue
        if op == "publish":
            ok = mf.matches(r, resource)
        elif op == "subscribe":
            ok = mf.intersects(resource, r) if deny else mf.within(resource, r)
        else:
            ok = _kafka_match(p, r, resource)
        if ok:
            return p
    return None


def _ids_match(ids: tuple[Pattern, ...], identity: Identity | None, zone: str) -> bool:
    if not ids:
        return True
    if identity is None:
        return False
    return any(_kafka_match(p, r, identity.id) for p in ids if (r := p.render(identity, zone)) is not None)


def _resource_problem(op: str, resource: str) -> str | None:
    if op == "publish" and not mf.valid_topic_name(resource):
        return f"{resource!r} is not a valid MQTT topic name"
    if op == "subscribe" and not mf.valid_filter(resource):
        return f"{resource!r} is not a valid MQTT topic filter"
    if _resource_kind(op) in ("topic", "group") and not resource:
        return "empty resource name"
    return None


def _evaluate(rules: Rules, identity: Identity | None, zone: str | None, listener: str, op: str,
              resource: str, trace: list[str] | None) -> Decision:
    def note(msg: str) -> None:
        if trace is not None:
            trace.append(msg)

    if op not in OPS:
        raise ValueError(f"unknown operation {op!r} (known: {', '.join(OPS)})")
    zone = zone if zone is not None else (identity.zone if identity else None)
    if zone is None:
        return Decision(False, None, "the client has no zone (no certificate and no listener zone)")
    kind = _resource_kind(op)
    problem = _resource_problem(op, resource)
    if problem:
        return Decision(False, None, problem)
    who = f"{zone}/{identity.id}" if identity else f"{zone}/(anonymous)"
    res_text = "the cluster" if kind == "cluster" else repr(resource)

    for d in rules.denies:
        if op not in d.ops:
            continue
        if d.from_zones and zone not in d.from_zones:
            continue
        if d.to and listener not in d.to:
            continue
        if not _ids_match(d.ids, identity, zone):
            note(f"deny {d.name!r}: not for id {identity.id if identity else '(anonymous)'}")
            continue
        # A deny naming no resources covers every resource of its operations; one naming topics
        # or groups covers only those (and the cluster, for admin).
        scoped = d.topics is not None or d.groups is not None
        pats = d.topics if kind in ("mqtt", "topic") else d.groups if kind == "group" else None
        if pats is None and scoped and kind != "cluster":
            note(f"deny {d.name!r}: names no {'groups' if kind == 'group' else 'topics'}")
            continue
        if pats is None:
            hit = res_text if kind == "cluster" else "every resource"
        else:
            p = _first_match(pats, op, resource, identity, zone, deny=True)
            if p is None:
                note(f"deny {d.name!r}: {res_text} not in its resources")
                continue
            hit = f"{res_text} matches {p}"
        return Decision(False, d.name, f"explicit deny {d.name!r}: {op} on {hit}")

    candidates = rules.conduits_for(zone, listener)
    if not candidates:
        return Decision(False, None, f"no conduit from zone {zone!r} to listener {listener!r}")
    seen_op = False
    for c in candidates:
        if op not in c.effective_ops:
            note(f"conduit {c.name!r}: does not allow {op} (allows {', '.join(sorted(c.effective_ops))})")
            continue
        if not _ids_match(c.ids, identity, zone):
            note(f"conduit {c.name!r}: id of {who} not in {[str(p) for p in c.ids]}")
            continue
        seen_op = True
        if kind == "cluster":
            return Decision(True, c.name, f"conduit {c.name!r} allows admin", c.limits)
        pats = c.topics if kind in ("mqtt", "topic") else c.groups
        p = _first_match(pats, op, resource, identity, zone, deny=False)
        if p is None:
            rendered = [p.render(identity, zone) or f"{p} (no value for {who})" for p in pats]
            verb = "is not within any of" if op == "subscribe" else "matches none of"
            note(f"conduit {c.name!r}: {res_text} {verb} {rendered}")
            continue
        how = "is within" if op == "subscribe" else "matches"
        return Decision(True, c.name, f"conduit {c.name!r} allows {op}: {res_text} {how} {p}", c.limits)
    if not seen_op:
        return Decision(False, None, f"no conduit from zone {zone!r} to listener {listener!r} allows {op} for {who}")
    return Decision(False, None, f"{op} on {res_text} is outside every conduit from zone {zone!r} "
                                 f"to listener {listener!r}")


def decide(rules: Rules, identity: Identity | None, zone: str | None, listener: str, op: str,
           resource: str) -> Decision:
    """Pure access decision. `zone` overrides identity.zone (None: use the identity's zone)."""
    return _evaluate(rules, identity, zone, listener, op, resource, None)


def explain(rules: Rules, identity: Identity | None, zone: str | None, listener: str, op: str,
            resource: str) -> Explanation:
    """decide() plus a trace of every rule considered and why it did not decide."""
    trace: list[str] = []
    d = _evaluate(rules, identity, zone, listener, op, resource, trace)
    return Explanation(d, tuple(trace))


# --- parsing


def _lines_of_headers(text: str, header: str) -> list[int]:
    pat = re.compile(r"^\s*" + re.escape(header) + r"\s*(#.*)?$")
    return [i + 1 for i, ln in enumerate(text.splitlines()) if pat.match(ln)]


def _key_line(text: str, start: int | None, key: str) -> int | None:
    """The line of `key = ` inside the table starting at line `start`, else `start`."""
    if start is None:
        return None
    lines = text.splitlines()
    for i in range(start, len(lines)):
        ln = lines[i].strip()
        if ln.startswith("["):
            break
        if re.match(re.escape(key) + r"\s*=", ln) or re.match(r'"' + re.escape(key) + r'"\s*=', ln):
            return i + 1
    return start


class _Parser:
    def __init__(self, text: str, source: str, known_listeners: Iterable[str] | None) -> None:
        self.text = text
        self.source = source
        self.known_listeners = set(known_listeners) if known_listeners is not None else None
        self.conduit_lines = _lines_of_headers(text, "[[conduits]]")
        self.deny_lines = _lines_of_headers(text, "[[deny]]")

    def fail(self, line: int | None, where: str, problem: str, key: str | None = None) -> RulesError:
        if key is not None:
            line = _key_line(self.text, line, key)
            where = f"{where}, key {key!r}"
        return RulesError(self.source, line, where, problem)

    def parse(self) -> Rules:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"at line (\d+)", str(e))
            raise RulesError(self.source, int(m.group(1)) if m else None, "syntax", str(e)) from None
        for k in doc:
            if k not in ("zones", "conduits", "deny"):
                raise self.fail(None, "top level", f"unknown table {k!r} (known: zones, conduits, deny)")
        zones = self.parse_zones(doc.get("zones", {}))
        conduits = doc.get("conduits", [])
        denies = doc.get("deny", [])
        if not isinstance(conduits, list) or not isinstance(denies, list):
            raise self.fail(None, "top level", "conduits and deny must be arrays of tables ([[conduits]], [[deny]])")
        parsed_c: list[Conduit] = []
        names: set[str] = set()
        for i, t in enumerate(conduits):
            c = self.parse_conduit(i, t, zones)
            if c.name in names:
                raise self.fail(c.line, f"conduit {c.name!r}", "duplicate rule name", "name")
            names.add(c.name)
            parsed_c.append(c)
        parsed_d: list[DenyRule] = []
        for i, t in enumerate(denies):
            d = self.parse_deny(i, t, zones)
            if d.name in names:
                raise self.fail(d.line, f"deny {d.name!r}", "duplicate rule name", "name")
            names.add(d.name)
            parsed_d.append(d)
        return Rules.build(zones, parsed_c, parsed_d, self.source)

    def parse_zones(self, table: Any) -> dict[str, Zone]:
        if not isinstance(table, dict):
            raise self.fail(None, "zones", "must be a table of [zones.NAME] tables")
        out = {}
        for name, z in table.items():
            hdr = _lines_of_headers(self.text, f"[zones.{name}]")
            line = hdr[0] if hdr else None
            where = f"zone {name!r}"
            if not NAME_RE.fullmatch(name):
                raise self.fail(line, where, "zone names are 1-64 characters of A-Z a-z 0-9 . _ -")
            if not isinstance(z, dict):
                raise self.fail(line, where, "must be a table")
            for k in z:
                if k not in ("sl_target", "description"):
                    raise self.fail(line, where, "unknown key (known: sl_target, description)", k)
            sl = z.get("sl_target")
            if sl is not None and (not isinstance(sl, int) or isinstance(sl, bool) or not 0 <= sl <= 4):
                raise self.fail(line, where, f"sl_target must be an integer 0-4 (IEC 62443 SL), got {sl!r}",
                                "sl_target")
            out[name] = Zone(name, sl, str(z.get("description", "")))
        return out

    def _names(self, value: Any, line: int | None, where: str, key: str, zones: Mapping[str, Zone] | None
               ) -> tuple[str, ...]:
        vals = [value] if isinstance(value, str) else value
        if not isinstance(vals, list) or not vals or not all(isinstance(v, str) and v for v in vals):
            raise self.fail(line, where, "expected a name or a non-empty list of names", key)
        for v in vals:
            if zones is not None and v not in zones:
                raise self.fail(line, where, f"unknown zone {v!r} (declared: {', '.join(zones) or 'none'})", key)
            if zones is None and self.known_listeners is not None and v not in self.known_listeners:
                raise self.fail(line, where, f"unknown listener {v!r} (configured: "
                                f"{', '.join(sorted(self.known_listeners)) or 'none'})", key)
        return tuple(vals)

    def _ops(self, value: Any, line: int | None, where: str, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(line, where, "expected a non-empty list of operations", key)
        for v in value:
            if v not in OPS:
                raise self.fail(line, where, f"unknown operation {v!r} (known: {', '.join(OPS)})", key)
        return tuple(value)

    def _patterns(self, value: Any, line: int | None, where: str, key: str, mqtt: bool) -> tuple[Pattern, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(line, where, "empty list: give at least one pattern", key)
        out = []
        for it in items:
            if isinstance(it, dict):
                if mqtt:
                    raise self.fail(line, where, "MQTT rules take topic filters (e.g. \"uns/acme/#\"), "
                                    "not {prefix = ...} tables", key)
                if set(it) != {"prefix"} or not isinstance(it["prefix"], str) or not it["prefix"]:
                    raise self.fail(line, where, f"expected {{prefix = \"non-empty\"}}, got {it!r}", key)
                text, kind = it["prefix"], "prefix"
            elif isinstance(it, str):
                text = it
                kind = "mqtt" if mqtt else ("any" if it == "*" else "literal")
            else:
                raise self.fail(line, where, f"expected a string or {{prefix = ...}}, got {it!r}", key)
            for ph in _PLACEHOLDER_RE.findall(text):
                if ph not in ("id", "zone"):
                    raise self.fail(line, where, f"unknown placeholder {{{ph}}} in {text!r} (known: {{id}}, {{zone}})",
                                    key)
            probe = text.replace("{id}", "x").replace("{zone}", "x")
            if mqtt and not mf.valid_filter(probe):
                raise self.fail(line, where, f"{text!r} is not a valid MQTT topic filter", key)
            if not mqtt and key == "topics" and kind != "any" and not _KAFKA_NAME_RE.fullmatch(probe):
                raise self.fail(line, where, f"{text!r} is not a Kafka topic name or prefix "
                                "(letters, digits, . _ -; use \"*\" for any)", key)
            out.append(Pattern(kind, text))
        return tuple(out)

    def _check_keys(self, t: dict, known: tuple[str, ...], line: int | None, where: str) -> None:
        for k in t:
            if k not in known:
                raise self.fail(line, where, f"unknown key (known: {', '.join(known)})", k)

    def _rule_name(self, t: Any, line: int | None, what: str, i: int) -> str:
        if not isinstance(t, dict):
            raise self.fail(line, f"{what} #{i + 1}", "must be a table")
        name = t.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self.fail(line, f"{what} #{i + 1}", "every rule needs a name", "name")
        return name

    @staticmethod
    def _protocol(ops: Sequence[str]) -> bool | None:
        """True: MQTT ops only; False: Kafka ops only; None: mixed."""
        mq = [o for o in ops if o in MQTT_OPS]
        if not mq:
            return False
        if len(mq) == len(ops):
            return True
        return None

    def parse_conduit(self, i: int, t: Any, zones: Mapping[str, Zone]) -> Conduit:
        line = self.conduit_lines[i] if i < len(self.conduit_lines) else None
        name = self._rule_name(t, line, "conduit", i)
        where = f"conduit {name!r}"
        self._check_keys(t, ("name", "description", "from", "to", "ids", "allow", "topics", "groups",
                             "max_qos", "rate"), line, where)
        for req in ("from", "to", "allow"):
            if req not in t:
                raise self.fail(line, where, f"missing required key {req!r}")
        from_zones = self._names(t["from"], line, where, "from", zones)
        to = self._names(t["to"], line, where, "to", None)
        allow = self._ops(t["allow"], line, where, "allow")
        mqtt = self._protocol(allow)
        if mqtt is None:
            raise self.fail(line, where, "mixes MQTT operations (publish, subscribe) with Kafka operations; "
                            "a conduit goes to one listener protocol: split it", "allow")
        needs_topics = any(o in MQTT_OPS or o in TOPIC_OPS for o in allow)
        topics: tuple[Pattern, ...] = ()
        if "topics" in t:
            if not needs_topics:
                raise self.fail(line, where, "topics given but no allowed operation acts on topics", "topics")
            topics = self._patterns(t["topics"], line, where, "topics", mqtt)
        elif needs_topics:
            raise self.fail(line, where, f"allows {', '.join(o for o in allow if o in MQTT_OPS + TOPIC_OPS)} "
                            "but has no topics (use \"#\" or \"*\" to mean all)")
        groups: tuple[Pattern, ...] = ()
        uses_groups = any(o in GROUP_OPS for o in allow) or "consume" in allow
        if "groups" in t:
            if not uses_groups:
                raise self.fail(line, where, "groups given but no allowed operation uses groups "
                                "(consume, group_join, group_commit)", "groups")
            groups = self._patterns(t["groups"], line, where, "groups", False)
        elif any(o in GROUP_OPS for o in allow):
            raise self.fail(line, where, "allows group operations but has no groups (use \"*\" to mean all)")
        ids = self._patterns(t["ids"], line, where, "ids", False) if "ids" in t else ()
        limits = self._limits(t, line, where, mqtt)
        return Conduit(name, from_zones, to, allow, topics, groups, ids, limits,
                       str(t.get("description", "")), line)

    def _limits(self, t: dict, line: int | None, where: str, mqtt: bool) -> Limits:
        max_qos = t.get("max_qos")
        if max_qos is not None:
            if not mqtt:
                raise self.fail(line, where, "max_qos applies to MQTT conduits only", "max_qos")
            if not isinstance(max_qos, int) or isinstance(max_qos, bool) or not 0 <= max_qos <= 2:
                raise self.fail(line, where, f"max_qos must be 0, 1 or 2, got {max_qos!r}", "max_qos")
        rate = t.get("rate", {})
        if not isinstance(rate, dict):
            raise self.fail(line, where, "rate must be a table { msgs_per_s = N, max_payload = \"64KiB\" }", "rate")
        for k in rate:
            if k not in ("msgs_per_s", "max_payload"):
                raise self.fail(line, where, f"unknown rate key {k!r} (known: msgs_per_s, max_payload)", "rate")
        mps = rate.get("msgs_per_s")
        if mps is not None and (isinstance(mps, bool) or not isinstance(mps, (int, float)) or mps <= 0):
            raise self.fail(line, where, f"msgs_per_s must be a positive number, got {mps!r}", "rate")
        mp = rate.get("max_payload")
        if mp is not None:
            try:
                mp = parse_size(mp)
            except ValueError as e:
                raise self.fail(line, where, f"max_payload: {e}", "rate") from None
        return Limits(max_qos, float(mps) if mps is not None else None, mp)

    def parse_deny(self, i: int, t: Any, zones: Mapping[str, Zone]) -> DenyRule:
        line = self.deny_lines[i] if i < len(self.deny_lines) else None
        name = self._rule_name(t, line, "deny", i)
        where = f"deny {name!r}"
        self._check_keys(t, ("name", "description", "from", "to", "ids", "ops", "topics", "groups"), line, where)
        from_zones = self._names(t["from"], line, where, "from", zones) if "from" in t else ()
        to = self._names(t["to"], line, where, "to", None) if "to" in t else ()
        ops = self._ops(t["ops"], line, where, "ops") if "ops" in t else OPS
        topics = groups = None
        if "topics" in t:
            mqtt = self._protocol([o for o in ops if o in MQTT_OPS + TOPIC_OPS])
            if mqtt is None:
                raise self.fail(line, where, "topics are MQTT filters or Kafka names: a deny with topics must "
                                "list only MQTT or only Kafka operations", "ops")
            topics = self._patterns(t["topics"], line, where, "topics", mqtt)
        if "groups" in t:
            groups = self._patterns(t["groups"], line, where, "groups", False)
        ids = self._patterns(t["ids"], line, where, "ids", False) if "ids" in t else ()
        return DenyRule(name, from_zones, to, ops, topics, groups, ids, str(t.get("description", "")), line)


def parse_rules(text: str, source: str = "<rules>", known_listeners: Iterable[str] | None = None) -> Rules:
    """Parse rules from TOML text. Raises RulesError (file:line, rule, key, reason)."""
    return _Parser(text, source, known_listeners).parse()


def load_rules(path: str | Path, known_listeners: Iterable[str] | None = None) -> Rules:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RulesError(str(path), None, "file", e.strerror or str(e)) from None
    except UnicodeDecodeError as e:
        raise RulesError(str(path), None, "file", f"not UTF-8: {e}") from None
    return parse_rules(text, str(path), known_listeners)


# --- denial audit


@dataclass(frozen=True)
class Denial:
    time: float  # epoch seconds, given by the caller
    identity: str  # "zone/id" or "(anonymous)"
    serial: str | None
    zone: str | None
    listener: str
    op: str
    resource: str
    rule: str | None  # None: default deny
    reason: str


class DenialAudit:
    """Bounded ring of recent denials and counters; no IO, time passed in."""

    def __init__(self, capacity: int = 1000) -> None:
        self._ring: deque[Denial] = deque(maxlen=capacity)
        self.total = 0
        self.by_op: Counter[str] = Counter()
        self.by_listener: Counter[str] = Counter()
        self.by_zone: Counter[str] = Counter()
        self.by_rule: Counter[str] = Counter()

    @property
    def capacity(self) -> int:
        return self._ring.maxlen or 0

    @property
    def dropped(self) -> int:
        """Denials counted but no longer in the ring."""
        return self.total - len(self._ring)

    def record(self, now: float, identity: Identity | None, zone: str | None, listener: str, op: str,
               resource: str, decision: Decision) -> Denial:
        zone = zone if zone is not None else (identity.zone if identity else None)
        d = Denial(now, f"{identity.zone}/{identity.id}" if identity else "(anonymous)",
                   identity.serial if identity else None, zone, listener, op, resource,
                   decision.rule_name, decision.reason)
        self._ring.append(d)
        self.total += 1
        self.by_op[op] += 1
        self.by_listener[listener] += 1
        self.by_zone[zone or "-"] += 1
        self.by_rule[decision.rule_name or "default-deny"] += 1
        return d

    def recent(self, limit: int | None = None) -> list[Denial]:
        """Newest last."""
        items = list(self._ring)
        return items[-limit:] if limit else items

    def snapshot(self, limit: int | None = 100) -> dict[str, Any]:
        """Counters and recent denials as plain values, for the admin API."""
        return {"total": self.total, "dropped": self.dropped, "capacity": self.capacity,
                "by_op": dict(self.by_op), "by_listener": dict(self.by_listener),
                "by_zone": dict(self.by_zone), "by_rule": dict(self.by_rule),
                "recent": [asdict(d) for d in self.recent(limit)]}


class Authorizer:
    """The adapters' entry point: current rules (swapped atomically on reload), a bounded cache of
    decisions (a device publishes the same few topics over and over: ~20 us per decide, well under
    1 us per cache hit), and the denial audit."""

    def __init__(self, rules: Rules, audit: DenialAudit | None = None, cache_size: int = 8192) -> None:
        self.rules = rules
        self.audit = audit or DenialAudit()
        self.allowed = 0
        self._cache: dict[tuple[Any, ...], Decision] = {}
        self._cache_size = cache_size

    def check(self, now: float, identity: Identity | None, zone: str | None, listener: str, op: str,
              resource: str) -> Decision:
        key = (identity, zone, listener, op, resource)
        d = self._cache.get(key)
        if d is None:
            d = decide(self.rules, identity, zone, listener, op, resource)
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # oldest first
            self._cache[key] = d
        if d.allowed:
            self.allowed += 1
        else:
            self.audit.record(now, identity, zone, listener, op, resource, d)
        return d

    def replace(self, rules: Rules) -> None:
        """Install newly parsed rules; callers parse first, so an invalid file never gets here."""
        self.rules = rules
        self._cache = {}

    def reload(self, path: str | Path, known_listeners: Iterable[str] | None = None) -> Rules:
        """Parse `path` and install it (SIGHUP, admin API). On RulesError the old rules stay in force
        and the error propagates for the caller to log and report. Connections are not touched."""
        rules = load_rules(path, known_listeners)
        self.replace(rules)
        return rules
