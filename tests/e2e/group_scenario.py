"""The consumer-group scenario every client must pass, written once over a small client adapter.

Three members (each polling in its own thread, as applications do) share a 3-partition topic,
one partition each; a member leaves and the other two take its partition over; a member started
later resumes from the committed offsets. Across the run every record is consumed exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

Record = tuple[int, int, bytes | None, bytes]


class Member(Protocol):
    def poll(self) -> list[Record]:
        """Records fetched now (partition, offset, key, value); commits what it returns."""
        ...

    def assignment(self) -> set[int]: ...

    def close(self) -> None: ...


class _Runner:
    """Runs one member's poll loop in its own thread; the member object lives in that thread."""

    def __init__(self, factory: Callable[[str], Member], name: str, sink: Callable[[list[Record]], None]) -> None:
        self._stop = threading.Event()
        self._assignment: set[int] = set()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(factory, name, sink), daemon=True)
        self._thread.start()

    def _run(self, factory, name, sink) -> None:
        try:
            member = factory(name)
            try:
                while not self._stop.is_set():
                    records = member.poll()
                    if records:
                        sink(records)
                    self._assignment = member.assignment()
            finally:
                member.close()
        except BaseException as e:  # surfaced by the scenario
            self.error = e

    def assignment(self) -> set[int]:
        if self.error:
            raise self.error
        return self._assignment

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error:
            raise self.error


def run_group_scenario(new_member: Callable[[str], Member], produce: Callable[[int], int], *,
                       timeout: float = 60) -> None:
    total = produce(300)
    seen: dict[tuple[int, int], bytes] = {}
    dupes: list[tuple[int, int]] = []
    lock = threading.Lock()

    def sink(records: list[Record]) -> None:
        with lock:
            for p, off, _k, v in records:
                if (p, off) in seen:
                    dupes.append((p, off))
                seen[(p, off)] = v

    def wait(until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            time.sleep(0.1)

    runners = [_Runner(new_member, f"m{i}", sink) for i in range(3)]

    def spread() -> list[set[int]]:
        return [r.assignment() for r in runners]

    wait(lambda: all(len(a) == 1 for a in spread()) and sorted(p for a in spread() for p in a) == [0, 1, 2])
    assert sorted(p for a in spread() for p in a) == [0, 1, 2] and all(spread()), f"not shared: {spread()}"
    runners.pop().close()
    wait(lambda: sorted(p for a in spread() for p in a) == [0, 1, 2])
    assert sorted(p for a in spread() for p in a) == [0, 1, 2], f"no rebalance after a member left: {spread()}"
    wait(lambda: len(seen) >= total)
    for r in runners:
        r.close()
    # More data arrives while nobody is connected; a new member resumes where the group left off.
    total += produce(100)
    late = _Runner(new_member, "late", sink)
    wait(lambda: len(seen) >= total)
    late.close()
    assert not dupes, f"{len(dupes)} records consumed twice, e.g. {dupes[:3]}"
    assert len(seen) == total, f"{len(seen)} of {total} records consumed"
