"""The Cost tab's bar chart text (pure functions, the real model's output as input)."""

from __future__ import annotations

from tests.tui.fixed_source import cost
from tui.cost import bar, chart_rows, cost_chart, money


def test_bar_lengths_in_eighths():
    assert bar(10, 10, 4) == "████"
    assert bar(5, 10, 4) == "██  "
    assert bar(1, 16, 4) == "▎   "  # 2 eighths of 4 cells = a quarter of a cell
    assert bar(0.0001, 10, 4) == "▏   "  # a cost is never invisible
    assert bar(0, 10, 4) == bar(3, 0, 4) == "    "
    assert bar(99, 10, 4) == "████"  # clipped to the scale


def test_chart_has_one_row_per_line_item_and_the_totals():
    report = cost()
    rows = chart_rows(report)
    labels = [label for label, _, _ in rows]
    assert labels[:3] == ["brokers", "controllers", "block storage"]  # compute, then storage, ...
    assert "x-zone produce" in labels and "PUT uploads" in labels
    assert all(a > 0 or b > 0 for _, a, b in rows)  # items that cost nothing in both designs are left out
    a_sum = sum(a for _, a, _ in rows)
    assert abs(a_sum - report.broker_attached.total) < 1e-6
    lines = cost_chart(report, 76)
    assert all(len(line.plain) <= 76 for line in lines)
    total = lines[-1].plain
    assert total.startswith("total") and money(report.broker_attached.total) in total
    assert money(report.object_storage.total) in total


def test_money():
    assert money(3505.2) == "3,505" and money(97.191) == "97.19" and money(0.001) == "<0.01"
    assert money(1_234_567) == "1,235k" and money(0) == "0.00"
