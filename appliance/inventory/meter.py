"""Live per-topic traffic: a rolling-window byte meter fed from the produce, ingest and fetch paths.

Bytes in: batches appended by Kafka Produce and by MQTT ingestion. Bytes out: batches returned by
Kafka Fetch and read by the Kafka-to-MQTT egress ([[mqtt_out]]). The uplink's reads are not
egress here: forwarding to the cloud is the WAN link, not a consumer of this broker's design.

Pure: every call takes `now` (seconds, any monotonic origin), nothing reads a clock or yields.
Time is cut into buckets of `bucket_s` (10 s by default) counted from the meter's start, and the
last `window_s / bucket_s` buckets form the measurement window (1 h by default). Per topic and
bucket it keeps the bytes in (appended batches) and out (batches returned by Fetch), and a running
sum over the window, so the hot path is a dict lookup and two additions per batch (never per
record) and a window average costs nothing. The peak is the busiest bucket in the window (bytes / bucket_s).

Trio runs one task at a time and these calls never await, so no lock is needed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class TopicTraffic:
    """One topic's figures over the window (`window_s` seconds actually covered)."""

    topic: str
    window_s: float
    bytes_in: int  # within the window
    bytes_out: int
    bytes_in_total: int  # since the meter started (or since the topic was last forgotten)
    bytes_out_total: int
    peak_in_per_s: float  # busiest bucket's ingress rate; the average while the meter is younger than a bucket

    @property
    def bytes_in_per_s(self) -> float:
        return self.bytes_in / self.window_s if self.window_s > 0 else 0.0

    @property
    def bytes_out_per_s(self) -> float:
        return self.bytes_out / self.window_s if self.window_s > 0 else 0.0

    @property
    def peak_to_average(self) -> float:
        """Peak over average ingress, at least 1 (1 while nothing or too little has flowed)."""
        avg = self.bytes_in_per_s
        return max(1.0, self.peak_in_per_s / avg) if avg > 0 else 1.0

    @property
    def fan_out(self) -> float:
        """Egress over ingress: how many times each produced byte is read (0 with no ingress)."""
        return self.bytes_out / self.bytes_in if self.bytes_in else 0.0


class _Series:
    __slots__ = ("bucket", "cur_in", "cur_out", "done", "sum_in", "sum_out", "total_in", "total_out")

    def __init__(self, bucket: int) -> None:
        self.bucket = bucket  # index of the bucket being filled
        self.cur_in = 0
        self.cur_out = 0
        self.done: deque[tuple[int, int, int]] = deque()  # (bucket, in, out) of completed, non-empty buckets
        self.sum_in = 0  # over `done`
        self.sum_out = 0
        self.total_in = 0
        self.total_out = 0

    def roll(self, bucket: int, buckets: int) -> None:
        """Close the current bucket when `bucket` is a later one, and drop buckets out of the window."""
        if bucket > self.bucket:
            if self.cur_in or self.cur_out:
                self.done.append((self.bucket, self.cur_in, self.cur_out))
                self.sum_in += self.cur_in
                self.sum_out += self.cur_out
            self.bucket, self.cur_in, self.cur_out = bucket, 0, 0
        oldest = bucket - buckets + 1  # the window holds buckets oldest..bucket
        done = self.done
        while done and done[0][0] < oldest:
            _, b_in, b_out = done.popleft()
            self.sum_in -= b_in
            self.sum_out -= b_out


class TrafficMeter:
    def __init__(self, start: float, *, window_s: float = 3600.0, bucket_s: float = 10.0) -> None:
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError(f"need 0 < bucket_s <= window_s, got bucket {bucket_s}, window {window_s}")
        self.start = start
        self.bucket_s = bucket_s
        self.buckets = max(1, round(window_s / bucket_s))
        self.window_s = self.buckets * bucket_s
        self._series: dict[str, _Series] = {}

    def _bucket(self, now: float) -> int:
        return max(0, int((now - self.start) // self.bucket_s))

    def _get(self, topic: str, bucket: int) -> _Series:
        s = self._series.get(topic)
        if s is None:
            s = self._series[topic] = _Series(bucket)
        elif bucket != s.bucket:
            s.roll(bucket, self.buckets)
        return s

    def add_in(self, topic: str, nbytes: int, now: float) -> None:
        """Bytes appended to `topic` (a produced batch, or a batch built from MQTT messages)."""
        s = self._get(topic, self._bucket(now))
        s.cur_in += nbytes
        s.total_in += nbytes

    def add_out(self, topic: str, nbytes: int, now: float) -> None:
        """Bytes of `topic` returned to a consumer."""
        s = self._get(topic, self._bucket(now))
        s.cur_out += nbytes
        s.total_out += nbytes

    def forget(self, topic: str) -> None:
        """A deleted topic: a new one of the same name starts from zero."""
        self._series.pop(topic, None)

    def topics(self) -> list[str]:
        return sorted(self._series)

    def totals(self) -> dict[str, tuple[int, int]]:
        """(bytes in, bytes out) per topic since the start: counters, no window, no clock."""
        return {t: (s.total_in, s.total_out) for t, s in sorted(self._series.items())}

    def covered_s(self, now: float) -> float:
        """Seconds of the window that have elapsed: from the meter's start until the window is full."""
        bucket = self._bucket(now)
        in_bucket = max(0.0, (now - self.start) - bucket * self.bucket_s)
        return min(bucket, self.buckets - 1) * self.bucket_s + in_bucket

    def traffic(self, topic: str, now: float) -> TopicTraffic:
        bucket = self._bucket(now)
        window = self.covered_s(now)
        s = self._series.get(topic)
        if s is None:
            return TopicTraffic(topic, window, 0, 0, 0, 0, 0.0)
        s.roll(bucket, self.buckets)
        b_in, b_out = s.sum_in + s.cur_in, s.sum_out + s.cur_out
        if window >= self.bucket_s:  # the current, partial bucket counts as a lower bound
            peak = max(s.cur_in, max((b for _, b, _ in s.done), default=0)) / self.bucket_s
        else:  # younger than one bucket: no peak to speak of yet
            peak = b_in / window if window > 0 else 0.0
        return TopicTraffic(topic, window, b_in, b_out, s.total_in, s.total_out, peak)

    def snapshot(self, now: float) -> dict[str, TopicTraffic]:
        return {t: self.traffic(t, now) for t in sorted(self._series)}
