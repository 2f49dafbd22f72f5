"""Small text helpers for the console (pure)."""

from __future__ import annotations

import re

_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def human_rate(per_s: float, unit: str = "") -> str:
    if per_s >= 1_000_000:
        return f"{per_s / 1_000_000:.1f}M{unit}/s"
    if per_s >= 1_000:
        return f"{per_s / 1_000:.1f}k{unit}/s"
    return f"{per_s:.0f}{unit}/s" if per_s >= 10 or per_s == 0 else f"{per_s:.1f}{unit}/s"


def human_duration_ms(value: str | int) -> str:
    try:
        n = int(value)
    except ValueError:
        return str(value)
    if n < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}ms"


def human_uptime(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def parse_retention(text: str) -> int:
    """Milliseconds from "7d", "12h", "30m", "90s", "250ms", a plain number of ms, or "forever"/-1."""
    t = text.strip().lower()
    if t in ("forever", "-1", "infinite", "none"):
        return -1
    m = re.fullmatch(r"(\d+)\s*(ms|s|m|h|d)?", t)
    if not m:
        raise ValueError(f"retention {text!r}: use e.g. 7d, 12h, 30m, 3600000 (ms) or forever")
    return int(m.group(1)) * _DURATION_UNITS_MS[m.group(2) or "ms"]
