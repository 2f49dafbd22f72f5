"""Measure the pyz for bench/RESULTS.md: build time, size, first-run extraction and warm start-up.

    python packaging/measure_pyz.py [--cold]    # --cold also times a build with an empty wheel cache
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_pyz import build  # noqa: E402
from pyz_targets import PYTHONS, find_interpreter  # noqa: E402


def timed_run(python: str, pyz: Path, cache: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIV_", "PYTHON"))}
    env["MILLSTREAM_CACHE"] = str(cache)
    t = time.perf_counter()
    subprocess.run([python, str(pyz), "version"], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        pyz = tmpd / "millstream.pyz"
        if args.cold:
            t = time.perf_counter()
            build(pyz, tmpd / "wheels")
            print(f"build, empty wheel cache (downloads): {time.perf_counter() - t:.1f} s")
            pyz.unlink()
        build(pyz, Path(__file__).resolve().parent.parent / "build" / "pyz-wheels")  # fill the cache
        t = time.perf_counter()
        build(pyz, Path(__file__).resolve().parent.parent / "build" / "pyz-wheels")
        print(f"build, wheels cached: {time.perf_counter() - t:.1f} s")
        print(f"size: {pyz.stat().st_size / 1e6:.1f} MB")
        print("| Python | first run (extract + compile) | warm `version`, median | min |")
        print("|---|---|---|---|")
        for v in PYTHONS:
            exe = find_interpreter(v)
            if not exe:
                print(f"| {v} | not installed | | |")
                continue
            cache = tmpd / f"cache-{v}"
            first = timed_run(exe, pyz, cache)
            warm = [timed_run(exe, pyz, cache) for _ in range(args.runs)]
            print(f"| {v} | {first:.2f} s | {statistics.median(warm) * 1000:.0f} ms | {min(warm) * 1000:.0f} ms |")
            shutil.rmtree(cache)
        extracted = tmpd / "x"
        timed_run(sys.executable, pyz, extracted)
        total = sum(f.stat().st_size for f in extracted.rglob("*") if f.is_file())
        print(f"extracted size (one Python's first run, with its .pyc): {total / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
