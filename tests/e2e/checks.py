"""Assertions shared by the real-client tests: what a user would check after a produce/consume run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def assert_all_consumed_in_order(produced: Iterable[tuple[int, bytes, bytes]],
                                 consumed: Iterable[tuple[int, int, bytes | None, bytes]]) -> None:
    """produced: (partition, key, value) in send order; consumed: (partition, offset, key, value).

    Every produced record is consumed exactly once, each partition's records arrive in the order
    they were sent, and offsets within a partition are strictly increasing.
    """
    want: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for p, k, v in produced:
        want[p].append((k, v))
    got: dict[int, list[tuple[int, bytes | None, bytes]]] = defaultdict(list)
    for p, off, k, v in consumed:
        got[p].append((off, k, v))
    assert set(got) <= set(want), f"records on unexpected partitions {set(got) - set(want)}"
    for p, records in want.items():
        seen = got.get(p, [])
        offsets = [o for o, _, _ in seen]
        assert offsets == sorted(set(offsets)), f"partition {p}: offsets not strictly increasing"
        assert [(k, v) for _, k, v in seen] == records, (
            f"partition {p}: consumed {len(seen)} records, produced {len(records)}; order or content differs")
