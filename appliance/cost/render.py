"""A comparison as a terminal table (line items side by side) or as JSON-ready data."""

from __future__ import annotations

from typing import Any

from appliance.cost.model import CATEGORIES, Comparison


def money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def render_table(c: Comparison, *, title: str = "", baseline: Comparison | None = None) -> str:
    a, b = c.designs
    names: list[tuple[str, str]] = []  # (category, item) in first-seen order, grouped by category
    for cat in CATEGORIES:
        for d in c.designs:
            for line in d.lines:
                if line.category == cat and (cat, line.item) not in names:
                    names.append((cat, line.item))

    def cell(design, item: str) -> str:
        found = [line for line in design.lines if line.item == item]
        return money(found[0].monthly) if found else "-"

    head = ("line item", "(a) broker-attached", "(b) object storage")
    rows: list[tuple[str, str, str]] = []
    for cat in CATEGORIES:
        items = [item for k, item in names if k == cat]
        if not items:
            continue
        rows.append((f"{cat}", "", ""))
        rows += [(f"  {item}", cell(a, item), cell(b, item)) for item in items]
    rows.append(("total / month", money(a.total), money(b.total)))
    w0 = max(len(r[0]) for r in [head, *rows])
    w1 = max(len(r[1]) for r in [head, *rows])
    w2 = max(len(r[2]) for r in [head, *rows])
    out = []
    if title:
        out.append(title)
    out.append(f"monthly cost in {c.currency} ({c.sheet_name})")
    out.append(f"  (a) {a.title}: {a.brokers} brokers")
    out.append(f"  (b) {b.title}: {b.brokers} brokers")
    out.append(f"{head[0]:<{w0}}  {head[1]:>{w1}}  {head[2]:>{w2}}")
    out.append("-" * (w0 + w1 + w2 + 4))
    for i, (n, x, y) in enumerate(rows):
        if i == len(rows) - 1:
            out.append("-" * (w0 + w1 + w2 + 4))
        out.append(f"{n:<{w0}}  {x:>{w1}}  {y:>{w2}}")
    if a.total and b.total:
        cheaper = "(b)" if b.total < a.total else "(a)"
        ratio = max(a.total, b.total) / min(a.total, b.total)
        out.append(f"{cheaper} is {ratio:.1f}x cheaper")
    if baseline is not None:
        out.append(f"measured baseline: (a) {money(baseline.broker_attached.total)}, "
                   f"(b) {money(baseline.object_storage.total)}")
    out.append("")
    out.append("line items:")
    for d, tag in ((a, "(a)"), (b, "(b)")):
        for line in d.lines:
            out.append(f"  {tag} {line.item}: {line.quantity:,.1f} {line.unit} x {line.unit_price:g} = "
                       f"{money(line.monthly)}  [{line.note}]")
    out.append("")
    out.append("assumptions:")
    out += [f"  - {text}" for text in c.assumptions]
    return "\n".join(out)


def to_json(c: Comparison, *, projection: dict[str, Any] | None = None, baseline: Comparison | None = None
            ) -> dict[str, Any]:
    doc = c.as_dict()
    if projection:
        doc["projection"] = projection
    if baseline is not None:
        doc["baseline_totals"] = {d.design: d.total for d in baseline.designs}
    return doc
