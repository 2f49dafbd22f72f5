"""Small text helpers for the console (pure)."""

from __future__ import annotations

import datetime
import json
import re
import time

_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def human_rate(per_s: float, unit: str = "") -> str:
    if per_s >= 1_000_000:
        return f"{per_s / 1_000_000:.1f}M{unit}/s"
    if per_s >= 1_000:
        return f"{per_s / 1_000:.1f}k{unit}/s"
    return f"{per_s:.0f}{unit}/s" if per_s >= 10 or per_s == 0 else f"{per_s:.1f}{unit}/s"


def parse_retention(text: str) -> int:
    """Milliseconds from "7d", "12h", "30m", "90s", "250ms", a plain number of ms, or "forever"/-1."""
    t = text.strip().lower()
    if t in ("forever", "-1", "infinite", "none"):
        return -1
    m = re.fullmatch(r"(\d+)\s*(ms|s|m|h|d)?", t)
    if not m:
        raise ValueError(f"retention {text!r}: use e.g. 7d, 12h, 30m, 3600000 (ms) or forever")
    return int(m.group(1)) * _DURATION_UNITS_MS[m.group(2) or "ms"]


# --- record fields: text, JSON or hex ------------------------------------------------------------

FORMATS = ("text", "json", "hex")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def as_text(data: bytes) -> str:
    """UTF-8 with invalid bytes as \\xNN and control characters made visible."""
    text = data.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def as_json(data: bytes, *, pretty: bool = False) -> str | None:
    """Re-rendered JSON, or None when the bytes are not JSON."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=False)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def hexdump(data: bytes, width: int = 16) -> str:
    lines = []
    for i in range(0, len(data), width):
        chunk = data[i : i + width]
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:06x}  {chunk.hex(' '):<{width * 3 - 1}}  {printable}")
    return "\n".join(lines)


def render_field(data: bytes | None, fmt: str, *, pretty: bool = False, mark: bool = False) -> str:
    """A key, value or header value as the chosen format; one line unless `pretty`. In JSON
    format, bytes that are not JSON show as text, prefixed "(not JSON)" when `mark` is set."""
    if data is None:
        return "null"
    if fmt == "hex":
        return hexdump(data) if pretty else data.hex(" ")
    if fmt == "json":
        rendered = as_json(data, pretty=pretty)
        if rendered is not None:
            return rendered
        data_text = as_text(data)
        return ("(not JSON) " if mark else "") + (data_text if pretty else _one_line(data_text))
    text = as_text(data)
    return text if pretty else _one_line(text)


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t")


def format_timestamp_ms(ms: int) -> str:
    """UTC, to the millisecond: the same on every operator's screen and in every log."""
    if ms < 0:
        return "-"
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ms % 1000:03d}"


def parse_replay(text: str, now_ms: int) -> tuple[str, int]:
    """Where a replay starts: ("offset", n) for a whole number, else ("timestamp", ms) for
    "-15m" / "15m ago" (before now) or a date-time such as "2026-11-25 18:00" or "...T18:00:00Z"
    (UTC unless an offset is given)."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+", t):
        return "offset", int(t)
    m = re.fullmatch(r"-\s*(\d+)\s*(ms|s|m|h|d)|(\d+)\s*(ms|s|m|h|d)\s+ago", t)
    if m:
        n, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return "timestamp", now_ms - int(n) * _DURATION_UNITS_MS[unit]
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r}: give an offset (1200), a time back from now (-15m, 2h ago) "
                         "or a UTC date-time (2026-11-25 18:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return "timestamp", int(when.timestamp() * 1000)
