"""A trio test that hangs fails after HANG_LIMIT seconds of wall-clock time, naming where every
task was waiting, instead of stalling the suite (and CI) until an outer timeout kills it.

pytest-trio runs each async test with `trio.run`; tests/conftest.py marks every async test with
`pytest.mark.trio(run=run_with_watchdog)`. A thread timer (wall clock: autojumping mock clocks
must not fire it) dumps the task tree, then cancels the test; a test that stops in time is
untouched. TEST_HANG_LIMIT=seconds overrides the limit (2 h under FAULTS_LONG)."""

from __future__ import annotations

import os
import threading
from typing import Any

import trio

# `make faults-long` runs scenarios (a million hostile frames) that take longer on purpose
HANG_LIMIT = float(os.environ.get("TEST_HANG_LIMIT") or (7200 if os.environ.get("FAULTS_LONG", "") not in ("", "0")
                                                        else 300))


def task_tree() -> str:
    """Every task of the current run with the frames it is suspended in (innermost last)."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        frames = [f"{f.f_code.co_filename.rsplit('/', 2)[-1]}:{lineno} {f.f_code.co_name}"
                  for f, lineno in task.iter_await_frames() if "/trio/" not in f.f_code.co_filename]
        lines.append(f"{'  ' * depth}{task.name}: {' > '.join(frames[-6:]) or '(running)'}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    return "\n".join(lines)


def run_with_watchdog(fn: Any, *, clock: Any = None, instruments: Any = (), limit: float | None = None) -> Any:
    limit = HANG_LIMIT if limit is None else limit
    dump: list[str] = []

    async def guarded() -> Any:
        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:

            def fire() -> None:
                dump.append(task_tree())
                scope.cancel()

            def from_thread() -> None:
                try:
                    token.run_sync_soon(fire)
                except trio.RunFinishedError:
                    pass

            timer = threading.Timer(limit, from_thread)
            timer.daemon = True
            timer.start()
            try:
                result = await fn()
            finally:
                timer.cancel()
        if dump:
            raise AssertionError(f"test still running after {limit:g} s (wall clock), cancelled; "
                                 f"where each task waited:\n{dump[0]}")
        return result

    return trio.run(guarded, clock=clock, instruments=list(instruments))
