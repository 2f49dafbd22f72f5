"""Per-topic measured figures: the input of the placement checks and of the cost model.

JSON shape (a file for `millstream cost --measurements`, and what the admin API is to serve at
`GET /api/v1/measurements`):

    {"window_s": 3600,                      # the measurement window, seconds (optional)
     "topics": [{"topic": "uns.acme.plant1.line3.telemetry",
                 "bytes_in_per_s": 150000,   # average ingress over the window
                 "bytes_out_per_s": 300000,  # average egress to consumers, all groups (optional)
                 "consumer_groups": 2,       # fan-out (optional; egress = in x groups if out is absent)
                 "peak_to_average": 2.5,     # peak ingress / average over the window (optional, 1)
                 "partitions": 6,            # (optional, 1)
                 "retained_bytes": 123456,   # bytes held now, one copy (optional, 0)
                 "retention_s": 604800}]}    # topic retention.ms / 1000; null = unlimited (optional)

The admin API adds figures the model does not need (all optional, accepted here so its document
can be saved and fed back): "covered_s" (how much of the window has elapsed) and "bucket_s" (the
peak's resolution) at the top; "fan_out" (egress / ingress), "bytes_in_total" and
"bytes_out_total" (bytes since the appliance started) per topic.

A bare list of topic objects is accepted too. Unknown keys are refused so a typo is not a zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MeasurementError(ValueError):
    """The measurements document is malformed; the message names where."""


@dataclass(frozen=True)
class TopicMeasurement:
    topic: str
    bytes_in_per_s: float
    bytes_out_per_s: float | None = None
    consumer_groups: int = 0
    peak_to_average: float = 1.0
    partitions: int = 1
    retained_bytes: int = 0
    retention_s: float | None = None
    bytes_in_total: int | None = None  # informational (the admin API's counters)
    bytes_out_total: int | None = None

    @property
    def fan_out(self) -> float:
        """Egress over ingress: how many times each produced byte is read."""
        return self.egress_bytes_per_s / self.bytes_in_per_s if self.bytes_in_per_s else 0.0

    @property
    def egress_bytes_per_s(self) -> float:
        """Measured egress when known, else ingress times the consumer fan-out."""
        if self.bytes_out_per_s is not None:
            return self.bytes_out_per_s
        return self.bytes_in_per_s * self.consumer_groups

    @property
    def carries_traffic(self) -> bool:
        return self.bytes_in_per_s > 0 or self.egress_bytes_per_s > 0

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "bytes_in_per_s": self.bytes_in_per_s, "bytes_out_per_s": self.bytes_out_per_s,
                "consumer_groups": self.consumer_groups, "peak_to_average": self.peak_to_average,
                "partitions": self.partitions, "retained_bytes": self.retained_bytes, "retention_s": self.retention_s,
                "fan_out": self.fan_out, "bytes_in_total": self.bytes_in_total, "bytes_out_total": self.bytes_out_total}


@dataclass(frozen=True)
class Measurements:
    topics: tuple[TopicMeasurement, ...]
    window_s: float | None = None
    covered_s: float | None = None  # live measurements: the part of the window elapsed so far
    bucket_s: float | None = None

    def by_topic(self) -> dict[str, TopicMeasurement]:
        return {m.topic: m for m in self.topics}


_NUMBER_FIELDS = {"bytes_in_per_s": float, "bytes_out_per_s": float, "consumer_groups": int, "peak_to_average": float,
                  "partitions": int, "retained_bytes": int, "retention_s": float,
                  "bytes_in_total": int, "bytes_out_total": int}
_OPTIONAL = ("bytes_out_per_s", "retention_s", "bytes_in_total", "bytes_out_total")  # null allowed
_DERIVED = {"fan_out"}  # recomputed from the rates, so a saved admin API document reads back
_TOP_LEVEL = ("window_s", "covered_s", "bucket_s")


def _number(where: str, value: Any, kind: type, *, optional: bool) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MeasurementError(f"{where}: expected a non-negative number, got {value!r}")
    if kind is int and value != int(value):
        raise MeasurementError(f"{where}: expected an integer, got {value!r}")
    return kind(value)


def topic_from_json(obj: Any, where: str = "topics[0]") -> TopicMeasurement:
    if not isinstance(obj, Mapping):
        raise MeasurementError(f"{where}: expected an object, got {type(obj).__name__}")
    unknown = set(obj) - {"topic", *_NUMBER_FIELDS, *_DERIVED}
    if unknown:
        raise MeasurementError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic:
        raise MeasurementError(f"{where}.topic: expected a topic name")
    if "bytes_in_per_s" not in obj:
        raise MeasurementError(f"{where}.bytes_in_per_s: required")
    kwargs: dict[str, Any] = {}
    for key, kind in _NUMBER_FIELDS.items():
        if key in obj:
            kwargs[key] = _number(f"{where}.{key}", obj[key], kind, optional=key in _OPTIONAL)
    m = TopicMeasurement(topic=topic, **kwargs)
    if m.peak_to_average < 1:
        raise MeasurementError(f"{where}.peak_to_average: must be >= 1 (peak over average), got {m.peak_to_average}")
    if m.partitions < 1:
        raise MeasurementError(f"{where}.partitions: must be >= 1")
    return m


def measurements_from_json(doc: Any) -> Measurements:
    times: dict[str, float | None] = {}
    items = doc
    if isinstance(doc, Mapping):
        unknown = set(doc) - {"topics", *_TOP_LEVEL}
        if unknown:
            raise MeasurementError(f"unknown key(s) {', '.join(sorted(unknown))} "
                                   f"(expected topics, {', '.join(_TOP_LEVEL)})")
        items = doc.get("topics", [])
        times = {k: _number(k, doc[k], float, optional=True) for k in _TOP_LEVEL if k in doc}
    if not isinstance(items, list):
        raise MeasurementError("topics: expected a list")
    topics = tuple(topic_from_json(t, f"topics[{i}]") for i, t in enumerate(items))
    seen: set[str] = set()
    for i, t in enumerate(topics):
        if t.topic in seen:
            raise MeasurementError(f"topics[{i}].topic: {t.topic!r} appears twice")
        seen.add(t.topic)
    return Measurements(topics, **times)


def load_measurements(path: str | Path) -> Measurements:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MeasurementError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise MeasurementError(f"{path}: not valid JSON: {e}") from None
    try:
        return measurements_from_json(doc)
    except MeasurementError as e:
        raise MeasurementError(f"{path}: {e}") from None


def measurements_to_json(measurements: Iterable[TopicMeasurement], window_s: float | None = None) -> dict[str, Any]:
    return {"window_s": window_s, "topics": [m.as_dict() for m in measurements]}
