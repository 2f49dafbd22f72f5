"""The rolling-window traffic meter, with time passed in."""

from __future__ import annotations

import pytest

from appliance.inventory.meter import TrafficMeter

T0 = 1000.0


def test_average_over_the_elapsed_part_of_the_window():
    m = TrafficMeter(T0, window_s=60, bucket_s=10)
    for i in range(30):  # 1,000 bytes in and 3,000 out per second for 30 s
        m.add_in("t", 1000, T0 + i + 0.5)
        m.add_out("t", 3000, T0 + i + 0.5)
    tr = m.traffic("t", T0 + 30)
    assert tr.window_s == pytest.approx(30)
    assert tr.bytes_in == 30_000 and tr.bytes_out == 90_000
    assert tr.bytes_in_per_s == pytest.approx(1000)
    assert tr.bytes_out_per_s == pytest.approx(3000)
    assert tr.fan_out == pytest.approx(3)
    assert tr.peak_to_average == pytest.approx(1)


def test_old_buckets_leave_the_window_but_totals_stay():
    m = TrafficMeter(T0, window_s=60, bucket_s=10)
    m.add_in("t", 50_000, T0 + 1)
    assert m.traffic("t", T0 + 59).bytes_in == 50_000
    later = m.traffic("t", T0 + 75)  # window is buckets 2..7; bucket 0 is out
    assert later.bytes_in == 0 and later.bytes_in_per_s == 0
    assert later.bytes_in_total == 50_000
    assert later.window_s == pytest.approx(55)  # five whole buckets and 5 s of the current one
    assert later.peak_to_average == 1
    assert m.totals() == {"t": (50_000, 0)}


def test_peak_to_average_finds_the_burst():
    m = TrafficMeter(T0, window_s=100, bucket_s=10)
    for i in range(100):
        m.add_in("t", 100 if not 40 <= i < 50 else 1000, T0 + i)
    tr = m.traffic("t", T0 + 99.5)  # the last bucket is still filling
    assert tr.bytes_in == 90 * 100 + 10 * 1000
    avg = tr.bytes_in / tr.window_s
    assert tr.peak_in_per_s == pytest.approx(1000)
    assert tr.peak_to_average == pytest.approx(1000 / avg)
    assert tr.peak_to_average > 5


def test_idle_gaps_count_as_zero_and_topics_are_separate():
    m = TrafficMeter(T0, window_s=3600, bucket_s=10)
    m.add_in("a", 10, T0 + 5)
    m.add_in("a", 10, T0 + 1805)
    m.add_in("b", 7, T0 + 1805)
    a, b = m.traffic("a", T0 + 3595), m.traffic("b", T0 + 3595)
    assert a.bytes_in == 20 and b.bytes_in == 7
    assert a.bytes_in_per_s == pytest.approx(20 / 3595)
    assert a.peak_in_per_s == pytest.approx(1.0)  # 10 bytes in one 10 s bucket
    assert m.traffic("a", T0 + 3600).bytes_in == 10  # a full hour on, the first bucket left
    assert set(m.snapshot(T0 + 3600)) == {"a", "b"}


def test_young_meter_reports_no_peak_and_unknown_topic_is_zero():
    m = TrafficMeter(T0, window_s=3600, bucket_s=10)
    m.add_in("t", 4000, T0 + 1)
    tr = m.traffic("t", T0 + 2)
    assert tr.bytes_in_per_s == pytest.approx(2000)
    assert tr.peak_to_average == 1
    none = m.traffic("other", T0 + 2)
    assert none.bytes_in == 0 and none.fan_out == 0 and none.peak_to_average == 1


def test_forget_resets_a_topic():
    m = TrafficMeter(T0, window_s=60, bucket_s=10)
    m.add_in("t", 10, T0)
    m.forget("t")
    assert m.traffic("t", T0 + 1).bytes_in_total == 0 and m.topics() == []


def test_window_must_hold_a_bucket():
    with pytest.raises(ValueError):
        TrafficMeter(T0, window_s=5, bucket_s=10)
