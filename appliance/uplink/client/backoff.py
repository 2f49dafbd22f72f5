"""Exponential back-off with full jitter (pure: the random source is injected)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """delay() grows initial * 2**n up to `maximum`; each value is drawn uniformly from
    [delay/2, delay] so that many plants reconnecting after a cloud outage spread out."""

    def __init__(self, initial: float, maximum: float, *, rand: Callable[[], float] = random.random) -> None:
        self.initial = max(initial, 0.001)
        self.maximum = max(maximum, self.initial)
        self._rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** min(self.failures, 30)))
        self.failures += 1
        return ceiling / 2 + self._rand() * ceiling / 2

    def reset(self) -> None:
        self.failures = 0
