"""The ISA-95 asset map: which enterprise/site/area/line/cell/asset an MQTT topic belongs to. Pure.

`[[assets]]` entries match MQTT topics with a filter (named levels allowed) and give the context
as templates, either one `path` ("acme/plant1/{area}/{line}", split on `/` into the levels in
order, a prefix is fine) or per level (`site = "plant1"`). The most specific matching filter wins
(most literal levels, then most levels; file order breaks ties).

The context travels with each Kafka record as headers `isa95.enterprise` ... `isa95.asset`
(only the levels that are set) plus `isa95.path` (the set levels joined with `/`), and inside the
JSON envelope / Sparkplug records as an `asset` object. Headers, because consumers can filter on
them without parsing values, and values stay byte-for-byte what the device sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.config import ISA95_LEVELS, AssetRule
from appliance.ingest.templates import Template, TopicFilter


@dataclass(frozen=True, slots=True)
class AssetContext:
    levels: tuple[tuple[str, str], ...]  # (level name, value), set levels only, in ISA-95 order

    @property
    def path(self) -> str:
        return "/".join(v for _, v in self.levels)

    def headers(self) -> list[tuple[str, bytes]]:
        if not self.levels:
            return []
        out = [(f"isa95.{name}", value.encode()) for name, value in self.levels]
        out.append(("isa95.path", self.path.encode()))
        return out

    def as_dict(self) -> dict[str, str]:
        d = dict(self.levels)
        if d:
            d["path"] = self.path
        return d


NO_CONTEXT = AssetContext(())


class _Compiled:
    __slots__ = ("flt", "path", "per_level")

    def __init__(self, rule: AssetRule) -> None:
        self.flt = TopicFilter.parse(rule.match)
        self.path = Template(rule.path) if rule.path else None
        self.per_level = [(name, Template(getattr(rule, name))) for name in ISA95_LEVELS if getattr(rule, name)]

    def context(self, levels: Sequence[str]) -> AssetContext:
        values: dict[str, str] = {}
        if self.path is not None:
            parts = [p for p in self.path.render(levels, self.flt).split("/") if p]
            values.update(zip(ISA95_LEVELS, parts, strict=False))
        for name, tpl in self.per_level:
            v = tpl.render(levels, self.flt)
            if v:
                values[name] = v
        return AssetContext(tuple((n, values[n]) for n in ISA95_LEVELS if n in values))


class AssetMap:
    def __init__(self, rules: Sequence[AssetRule]) -> None:
        compiled = [_Compiled(r) for r in rules]
        # stable sort: file order breaks ties between equally specific filters
        self._rules = sorted(compiled, key=lambda c: c.flt.specificity, reverse=True)

    def __len__(self) -> int:
        return len(self._rules)

    def lookup(self, levels: Sequence[str]) -> AssetContext:
        for rule in self._rules:
            if rule.flt.matches(levels):
                return rule.context(levels)
        return NO_CONTEXT
