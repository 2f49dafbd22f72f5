"""Render FAULTS_REPORT lines as the reliability table of bench/RESULTS.md.

    python -m tests.faults.report bench/faults-report.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CORE = ("scenario", "iterations", "acknowledged", "lost", "duplicates", "recovery_p50_s", "recovery_p99_s")
SKIP = {"at", "long", *CORE}


def render(rows: list[dict]) -> str:
    out = ["| scenario | iterations | records acknowledged | lost | duplicates | recovery p50 / p99 | other figures |",
           "|---|---:|---:|---:|---:|---|---|"]
    latest: dict[str, dict] = {}
    for row in rows:  # the newest run of each scenario
        latest[row["scenario"]] = row
    for row in latest.values():
        recovery = (f"{row['recovery_p50_s']:.2f} s / {row['recovery_p99_s']:.2f} s"
                    if "recovery_p50_s" in row else "n/a")
        extra = ", ".join(f"{k}={v}" for k, v in sorted(row.items()) if k not in SKIP)
        out.append(f"| {row['scenario']} | {row['iterations']} | {row['acknowledged']} | {row['lost']} | "
                   f"{row['duplicates']} | {recovery} | {extra} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    rows = [json.loads(line) for line in Path(argv[1]).read_text().splitlines() if line.strip()]
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
