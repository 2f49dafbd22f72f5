"""How hard the fault scenarios push: short in CI, long by hand (`make faults-long`).

Every knob is an environment variable, so the same tests serve both runs:

    FAULTS_LONG=1                  switch every default below to its long value
    FAULTS_CRASH_ITERATIONS=N      kill -9 / restart cycles under load (CI 10, long 100)
    FAULTS_MQTT_CRASH_ITERATIONS=N kill -9 / restart cycles under paho QoS 1 load into Kafka (CI 6, long 100)
    FAULTS_TORN_ITERATIONS=N       corrupt-the-WAL-tail / restart cycles (CI 6, long 50)
    FAULTS_FUZZ_FRAMES=N           hostile frames sent to a live broker (CI 20000, long 1000000)
    FAULTS_HYPOTHESIS_EXAMPLES=N   examples per property test (CI 200, long 20000)
    FAULTS_STORE_OUTAGES=N         object-store outages under load, the last with a kill -9 (CI 1, long 5)
    FAULTS_CORRUPT_ROUNDS=N        random object damages read by a cold node, after the fixed one (CI 0, long 20)
    FAULTS_WAN_ITERATIONS=N        WAN cut + kill -9 of plant or cloud cycles (CI 3, long 50)
    FAULTS_SEED=N                  seed for every random choice (default: fixed, so CI is repeatable)
    FAULTS_REPORT=FILE             append one JSON line of figures per scenario (bench/RESULTS.md)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LONG = os.environ.get("FAULTS_LONG", "") not in ("", "0")

_DEFAULTS = {  # name: (CI, long)
    "FAULTS_CRASH_ITERATIONS": (10, 100),
    "FAULTS_MQTT_CRASH_ITERATIONS": (6, 100),
    "FAULTS_TORN_ITERATIONS": (6, 50),
    "FAULTS_FUZZ_FRAMES": (20_000, 1_000_000),
    "FAULTS_HYPOTHESIS_EXAMPLES": (200, 20_000),
    "FAULTS_STORE_OUTAGES": (1, 5),
    "FAULTS_CORRUPT_ROUNDS": (0, 20),
    "FAULTS_WAN_ITERATIONS": (3, 50),
}


def knob(name: str) -> int:
    raw = os.environ.get(name)
    if raw:
        return int(raw)
    ci, long = _DEFAULTS[name]
    return long if LONG else ci


def seed() -> int:
    return int(os.environ.get("FAULTS_SEED", "20240917"))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def report(scenario: str, **figures: Any) -> dict[str, Any]:
    """Record one scenario's figures: printed (pytest -s shows them) and appended to FAULTS_REPORT."""
    row = {"scenario": scenario, "long": LONG, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    line = json.dumps(row, sort_keys=True)
    print(f"FAULTS {line}")
    path = os.environ.get("FAULTS_REPORT")
    if path:
        with Path(path).open("a") as fh:
            fh.write(line + "\n")
    return row
