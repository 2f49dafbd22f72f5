"""Idempotent-producer rules, pure (no IO)."""

from __future__ import annotations

import pytest

from appliance.errors import InvalidProducerEpochError, OutOfOrderSequenceError, UnknownProducerIdError
from appliance.storage.producer_state import ProducerStateTable


def append(t: ProducerStateTable, pid: int, epoch: int, seq: int, count: int, base: int):
    dup = t.check(pid, epoch, seq, count - 1)
    if dup is None:
        t.record(pid, epoch, seq, count - 1, base, 0)
    return dup


def test_sequence_rules():
    t = ProducerStateTable()
    assert append(t, 7, 0, 0, 5, 100) is None
    assert append(t, 7, 0, 5, 5, 105) is None
    # a retry of either of the last batches is a duplicate answered with its original offsets
    assert append(t, 7, 0, 0, 5, 999)[3:] == (100, 104)
    assert append(t, 7, 0, 5, 5, 999)[3:] == (105, 109)
    with pytest.raises(OutOfOrderSequenceError):
        append(t, 7, 0, 11, 1, 110)  # gap
    with pytest.raises(OutOfOrderSequenceError):
        append(t, 7, 0, 3, 1, 110)  # overlaps, not an exact duplicate
    with pytest.raises(UnknownProducerIdError):
        append(t, 8, 0, 4, 1, 110)  # unknown producer must start at 0
    with pytest.raises(InvalidProducerEpochError):
        t.check(7, -1, 10, 0)  # older epoch
    with pytest.raises(OutOfOrderSequenceError):
        append(t, 7, 1, 10, 1, 110)  # a new epoch starts at 0
    assert append(t, 7, 1, 0, 2, 110) is None  # epoch bump
    with pytest.raises(InvalidProducerEpochError):
        append(t, 7, 0, 10, 1, 112)  # fenced
    assert t.view()[7]["epoch"] == 1 and t.view()[7]["last_sequence"] == 1


def test_only_last_five_batches_are_remembered_and_sequence_wraps():
    t = ProducerStateTable()
    for i in range(7):
        assert append(t, 1, 0, i, 1, i) is None
    assert append(t, 1, 0, 6, 1, 99)[3] == 6
    assert append(t, 1, 0, 2, 1, 99)[3] == 2
    with pytest.raises(OutOfOrderSequenceError):
        append(t, 1, 0, 1, 1, 99)  # fell out of the window: no longer recognised
    u = ProducerStateTable()
    assert append(u, 2, 0, 0, 1, 0) is None
    u.producers[2].batches[-1] = (0, 0x7FFFFFF0, 0x7FFFFFFF, 0, 0)
    assert append(u, 2, 0, 0, 3, 1) is None  # int32 wrap: after 2**31-1 comes 0


def test_truncate_evict_snapshot_restore():
    t = ProducerStateTable()
    append(t, 1, 0, 0, 1, 0)
    append(t, 1, 0, 1, 1, 1)
    append(t, 2, 0, 0, 1, 2)
    append(t, 1, 1, 0, 1, 3)  # epoch bump, not yet durable
    t.truncate(2)  # roll back offsets >= 2
    assert set(t.producers) == {1}
    assert t.producers[1].epoch == 0 and t.producers[1].last_sequence == 1
    assert append(t, 1, 0, 2, 1, 2) is None
    again = ProducerStateTable.restore(t.snapshot())
    assert again.view() == t.view()
    t.evict_before(3)
    assert not t.producers
