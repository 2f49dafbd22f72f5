"""How fast a cloud appliance alone absorbs pre-encoded Produce requests, and where its CPU goes
(run by hand; a companion to bench/uplink.py's catch-up figure).

    .venv/bin/python bench/cloud_absorb.py [--requests 200] [--settle 3]

A cloud-role appliance on loopback takes `--requests` pre-encoded ~1 MiB Produce requests (acks=-1,
5 pipelined on one connection: bench/kafka_produce_consume.py's raw diagnostic), then `--settle`
seconds so the object-tier upload of what came in falls inside the figure. Prints MB/s, the process's
CPU per MB and each busy thread's (main trio thread, WAL writer, worker threads: object uploads).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_produce_consume import raw_pipelined_produce_mbps  # noqa: E402

from tests.harness import ApplianceProcess  # noqa: E402


def thread_cpu(pid: int) -> dict[int, float]:
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            f = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[int(t.name)] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by native id, from py-spy (in the venv) if it is there."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return {}
    dump = subprocess.run([str(spy), "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    return {int(m[1]): m[3] for m in re.finditer(r'Thread (\d+) \((\w+)\): "([^"]+)"', dump)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--settle", type=float, default=3.0)
    args = ap.parse_args()
    cloud = ApplianceProcess(Path(tempfile.mkdtemp(prefix="millstream-bench-absorb-")) / "cloud", role="cloud").start()
    try:
        raw_pipelined_produce_mbps(cloud.bootstrap, 1024, requests=10)  # the topic, a warm connection
        time.sleep(1)
        pid = cloud.proc.pid
        before = thread_cpu(pid)
        mbps, mb = raw_pipelined_produce_mbps(cloud.bootstrap, 1024, requests=args.requests)
        time.sleep(args.settle)
        after = thread_cpu(pid)
        names = thread_names(pid)
        spent = {k: after[k] - before.get(k, 0.0) for k in after}
        total = sum(spent.values())
        print(f"cloud alone: {mbps:.1f} MB/s over {mb:.0f} MB; CPU {total:.2f} s = {total / mb * 1000:.2f} ms/MB "
              f"(load average {os.getloadavg()[0]:.1f})")
        for k in sorted(spent, key=lambda k: -spent[k]):
            if spent[k] > 0.01:
                print(f"  {names.get(k, f'thread {k}')}: {spent[k] / mb * 1000:.2f} ms/MB")
    finally:
        cloud.kill()


if __name__ == "__main__":
    main()
