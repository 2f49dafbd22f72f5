"""kafkajs (Node.js) against the broker: admin, idempotent produce, a two-member group."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

JS = Path(__file__).resolve().parents[1] / "js"


def test_kafkajs_round_trip_with_group(appliance):
    count = 120
    out = subprocess.run(["node", str(JS / "kafkajs_roundtrip.js"), appliance.bootstrap, "kafkajs.events", str(count)],
                         capture_output=True, text=True, timeout=90, cwd=JS)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    consumed = summary["consumed"]
    assert sorted(int(r["value"][2:]) for r in consumed) == list(range(count))
    by_partition = defaultdict(list)
    for r in consumed:
        by_partition[r["partition"]].append(r)
    for records in by_partition.values():
        assert [r["offset"] for r in records] == sorted(r["offset"] for r in records)
        # Same key always lands on the same partition.
    keys = defaultdict(set)
    for r in consumed:
        keys[r["key"]].add(r["partition"])
    assert all(len(parts) == 1 for parts in keys.values())
    assert set(by_partition) == {0, 1, 2}
    assert sum(1 for m in summary["members"].values() if m) >= 1
