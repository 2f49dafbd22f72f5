"""Topic filters with named levels, and templates over topic levels. Pure.

A filter is an MQTT topic filter whose single-level wildcards may carry a name:
`acme/{site}/{area}/+/#` matches like `acme/+/+/+/#` and names levels 1 and 2.

A template builds a string from the levels of the matched topic:
- `{0}`, `{1}`... the level at that position (0-based; missing levels render empty);
- `{site}` a named filter level, or a value the caller supplies (Sparkplug: `{group}`,
  `{edge_node}`, `{device}`; Kafka -> MQTT: `{topic}`, `{partition}`, `{key}`);
- `{#}` the levels matched by a trailing `#`, joined with `/`; `{topic}` the whole topic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_FIELD = re.compile(r"\{([^{}]*)\}")
_KAFKA_ILLEGAL = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class TopicFilter:
    text: str  # as configured
    levels: tuple[str, ...]  # "+" for named levels too
    names: Mapping[str, int]  # named level -> position
    multi_at: int | None  # position of a trailing "#"

    @classmethod
    def parse(cls, text: str) -> TopicFilter:
        levels: list[str] = []
        names: dict[str, int] = {}
        for i, level in enumerate(text.split("/")):
            if level.startswith("{") and level.endswith("}") and level != "{#}":
                names[level[1:-1]] = i
                level = "+"
            elif level == "{#}":
                level = "#"
            levels.append(level)
        multi = len(levels) - 1 if levels and levels[-1] == "#" else None
        return cls(text, tuple(levels), names, multi)

    @property
    def mqtt_filter(self) -> str:
        return "/".join(self.levels)

    @property
    def specificity(self) -> tuple[int, int]:
        """More literal levels, then more levels: the more specific filter."""
        literal = sum(1 for level in self.levels if level not in ("+", "#"))
        return literal, len(self.levels)

    def matches(self, levels: Sequence[str]) -> bool:
        pattern = self.levels
        if levels and levels[0].startswith("$") and pattern and pattern[0] in ("+", "#"):
            return False  # wildcards never match $-topics at the first level (MQTT rule)
        n = len(pattern)
        for i, want in enumerate(pattern):
            if want == "#":
                return True
            if i >= len(levels):
                return False
            if want != "+" and want != levels[i]:
                return False
        return len(levels) == n


class Template:
    """A compiled template; `render(levels, names, extra)` returns the string."""

    __slots__ = ("text", "_parts", "constant")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[tuple[bool, str]] = []  # (is_field, literal or field name)
        pos = 0
        for m in _FIELD.finditer(text):
            if m.start() > pos:
                parts.append((False, text[pos:m.start()]))
            parts.append((True, m.group(1)))
            pos = m.end()
        if pos < len(text):
            parts.append((False, text[pos:]))
        self._parts = parts
        self.constant = not any(is_field for is_field, _ in parts)

    def __bool__(self) -> bool:
        return bool(self.text)

    def fields(self) -> list[str]:
        return [v for is_field, v in self._parts if is_field]

    def render(self, levels: Sequence[str], flt: TopicFilter | None = None,
               extra: Mapping[str, str] | None = None) -> str:
        if self.constant:
            return self.text
        out: list[str] = []
        for is_field, v in self._parts:
            if not is_field:
                out.append(v)
            elif v.isdigit():
                i = int(v)
                out.append(levels[i] if i < len(levels) else "")
            elif v == "#":
                start = flt.multi_at if flt is not None and flt.multi_at is not None else len(levels)
                out.append("/".join(levels[start:]))
            elif extra is not None and v in extra:
                out.append(extra[v])
            elif flt is not None and v in flt.names:
                i = flt.names[v]
                out.append(levels[i] if i < len(levels) else "")
            elif v == "topic":
                out.append("/".join(levels))
            else:
                out.append("")
        return "".join(out)


def kafka_topic_name(text: str) -> str:
    """A legal Kafka topic name from rendered text: `/` becomes `.`, other illegal characters `_`."""
    name = _KAFKA_ILLEGAL.sub("_", text.replace("/", "."))[:249]
    if name in ("", ".", ".."):
        return "_"
    return name
