"""A token bucket for the uplink's bandwidth cap (pure: the caller passes the time in)."""

from __future__ import annotations


class TokenBucket:
    """`reserve(n, now)` takes n bytes and returns how long to wait before sending them.

    Tokens may go negative (a batch larger than the burst still goes out, later), so the long-run
    rate never exceeds `rate` bytes/s. rate 0 means no cap."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate * 0.2, 16 << 10)
        self.tokens = self.burst
        self._last: float | None = None

    @property
    def capped(self) -> bool:
        return self.rate > 0

    def reserve(self, n: int, now: float) -> float:
        if not self.capped:
            return 0.0
        if self._last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RateMeter:
    """Exponentially weighted bytes/s and records/s of acknowledged data."""

    def __init__(self, half_life: float = 5.0) -> None:
        self.half_life = half_life
        self.bytes_per_s = 0.0
        self.records_per_s = 0.0
        self._bytes = 0
        self._records = 0
        self._last: float | None = None

    def add(self, nbytes: int, records: int) -> None:
        self._bytes += nbytes
        self._records += records

    def tick(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        dt = now - self._last
        if dt < 0.5:
            return
        w = 0.5 ** (dt / self.half_life)
        self.bytes_per_s = w * self.bytes_per_s + (1 - w) * self._bytes / dt
        self.records_per_s = w * self.records_per_s + (1 - w) * self._records / dt
        self._bytes = self._records = 0
        self._last = now
