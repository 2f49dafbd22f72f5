"""The Cost tab: inventory findings, then the live workload's monthly cost on both designs as a
horizontal bar chart (one row per line item, broker-attached left, object storage right), the line
items with quantities and unit prices, and the model's assumptions. With a projection (e: scale
factor, retention) the chart prices the projected workload and a line above it keeps the
measured totals.

Textual has no bar chart widget: `cost_chart` draws one with block characters (eighths of a cell)
into a Static. Pure functions build the text; the pane only places it.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from appliance.admin.models import CostReport, DesignCostInfo, InventoryReport, human_bytes
from tui.dialogs import Projection
from tui.panes import sync_table

CHART_WIDTH = 76  # 80 columns less the panel's border and padding
LABEL = 16
VALUE = 7
CATEGORY_ORDER = ("compute", "storage", "requests", "network")
# Line items as the chart labels them (the table shows the full names). The two designs' producer
# traffic shares a row: it is the same bytes crossing zones in both.
SHORT = {
    "cross-zone: producers to leaders": "x-zone produce",
    "cross-zone: producers to brokers": "x-zone produce",
    "cross-zone: replication": "x-zone replicas",
    "cross-zone: consumers": "x-zone consume",
    "PUT: WAL uploads": "PUT uploads",
    "PUT: compaction": "PUT compaction",
    "GET: compaction reads": "GET compaction",
    "GET: catch-up reads": "GET catch-up",
}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
_EIGHTHS = " ▏▎▍▌▋▊▉"


def money(value: float) -> str:
    if 0 < abs(value) < 0.005:
        return "<0.01"
    if abs(value) >= 100_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def bar(value: float, scale: float, width: int) -> str:
    """`value` of `scale` as a bar `width` cells long at most, in eighths of a cell."""
    if scale <= 0 or value <= 0:
        return " " * width
    eighths = max(1, round(min(value / scale, 1.0) * width * 8))  # a non-zero cost stays visible
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)


def chart_rows(report: CostReport) -> list[tuple[str, float, float]]:
    """(label, broker-attached, object storage) per line item, by category, leaving out items that
    cost nothing in both designs."""
    rows: dict[str, list[float]] = {}
    order: list[tuple[int, str]] = []
    for side, design in enumerate((report.broker_attached, report.object_storage)):
        for line in design.lines:
            label = SHORT.get(line.item, line.item)
            if label not in rows:
                rows[label] = [0.0, 0.0]
                cat = CATEGORY_ORDER.index(line.category) if line.category in CATEGORY_ORDER else len(CATEGORY_ORDER)
                order.append((cat, label))
            rows[label][side] += line.monthly
    return [(label, rows[label][0], rows[label][1]) for _, label in sorted(order, key=lambda o: o[0])
            if rows[label][0] > 0 or rows[label][1] > 0]


def _lines(lines: list[Text], width: int) -> Text:
    """One Text of `lines`, each cut to `width` cells (a Static would wrap them)."""
    for line in lines:
        line.truncate(width, overflow="ellipsis")
    return Text("\n").join(lines)


def cost_chart(report: CostReport, width: int = CHART_WIDTH) -> list[Text]:
    a, b = report.broker_attached, report.object_storage
    bar_w = max(4, (width - LABEL - 3 - 2 * (VALUE + 1)) // 2)
    half = bar_w + 1 + VALUE
    rows = chart_rows(report)
    scale = max((max(x, y) for _, x, y in rows), default=0.0)
    head = Text()
    head.append(f"{report.currency + '/month':<{LABEL}}", style="bold")
    head.append(f"{'(a) broker-attached RF3':<{half}}", style="bold cyan")
    head.append(" │ ")
    head.append(f"{'(b) object storage':<{half}}", style="bold magenta")
    out = [head]
    for label, x, y in rows:
        line = Text(f"{label[:LABEL - 1]:<{LABEL}}")
        line.append(bar(x, scale, bar_w), style="cyan")
        line.append(f" {money(x) if x else '-':>{VALUE}} │ ")
        line.append(bar(y, scale, bar_w), style="magenta")
        line.append(f" {money(y) if y else '-':>{VALUE}}")
        out.append(line)
    top = max(a.total, b.total)
    cheaper = (a if a.total <= b.total else b).design
    total = Text(f"{'total':<{LABEL}}", style="bold")
    total.append(bar(a.total, top, bar_w), style="bold cyan")
    total.append(f" {money(a.total):>{VALUE}}", style="bold green" if cheaper == a.design else "bold")
    total.append(" │ ")
    total.append(bar(b.total, top, bar_w), style="bold magenta")
    total.append(f" {money(b.total):>{VALUE}}", style="bold green" if cheaper == b.design else "bold")
    out.append(total)
    return out


def cost_summary(report: CostReport) -> Text:
    a, b = report.broker_attached, report.object_storage
    w = report.workload
    text = Text()
    if a.total and b.total:
        tag, ratio = ("(b)", a.total / b.total) if b.total < a.total else ("(a)", b.total / a.total)
        if ratio < 1.05:
            text.append("(a) and (b) cost about the same", style="bold")
        else:
            text.append(f"{tag} {ratio:.1f}x cheaper", style="bold green")
        text.append(f"; {a.brokers} vs {b.brokers} brokers; ")
    text.append(f"in {human_bytes(w.ingress_bytes_per_s)}/s, out {human_bytes(w.egress_bytes_per_s)}/s, "
                f"{w.partitions} partitions, {human_bytes(w.retained_bytes)} kept")
    if report.measured_s is not None:
        text.append(f", measured {_span(report.measured_s)}")
    if report.projection:
        text.append("  projection", style="bold yellow")
    return text


def report_projection(report: CostReport) -> Projection | None:
    if not report.projection:
        return None
    return Projection(report.projection.get("scale"), report.projection.get("retention_s"))


def projection_line(report: CostReport) -> Text | None:
    """The projected totals next to the measured ones ("x4, retention 14d: (a) ... vs measured (a) ...")."""
    p = report_projection(report)
    if p is None:
        return None
    base = report.baseline_totals
    text = Text()
    text.append(f"{p.label}: ", style="bold yellow")
    text.append(f"(a) {money(report.broker_attached.total)}  (b) {money(report.object_storage.total)}", style="bold")
    if base:
        text.append(f"  vs measured (a) {money(base.get('broker_attached', 0.0))}  "
                    f"(b) {money(base.get('object_storage', 0.0))}")
    return text


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def findings_lines(inv: InventoryReport, *, limit: int = 3) -> list[Text]:
    c = inv.counts
    head = Text()
    head.append("inventory  ", style="bold")
    head.append(f"{len(inv.streams)} streams  " if inv.streams else "no [[streams]]  ")
    for sev, word in (("error", "error"), ("warning", "warning"), ("info", "note")):
        n = c.get(sev, 0)
        if n:
            head.append(f"{n} {word}{'' if n == 1 else 's'}  ", style=SEVERITY_STYLE[sev])
    if inv.unowned:
        shown = ", ".join(inv.unowned[:2]) + (f" +{len(inv.unowned) - 2}" if len(inv.unowned) > 2 else "")
        head.append(f"unowned: {shown}", style="yellow")
    out = [head]
    for f in inv.findings[:limit]:
        line = Text(f"{f.severity:<8}", style=SEVERITY_STYLE.get(f.severity, ""))
        line.append(f"{f.stream}: {f.message}")
        out.append(line)
    if len(inv.findings) > limit:
        out.append(Text(f"… {len(inv.findings) - limit} more: GET /api/v1/inventory", style="dim"))
    elif not inv.findings:
        out.append(Text("no findings", style="dim"))
    return out


def _line_rows(design: DesignCostInfo, tag: str) -> list[tuple[str, list[object]]]:
    return [(f"{tag}:{line.item}", [Text(tag), Text(line.item), Text(f"{line.quantity:,.1f}", justify="right"),
                                    Text(line.unit), Text(f"{line.unit_price:g}", justify="right"),
                                    Text(money(line.monthly), justify="right")])
            for line in design.lines]


class CostPane(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static("loading...", id="inventory-findings", classes="panel")
        yield Static("", id="cost-chart", classes="panel")
        table = DataTable(id="cost-lines", cursor_type="row", zebra_stripes=True)
        for label, key in (("", "design"), ("line item", "item"), ("quantity", "qty"), ("unit", "unit"),
                           ("price", "price"), ("monthly", "monthly")):
            table.add_column(label, key=key)
        yield table
        yield Static("", id="cost-assumptions")

    def show(self, report: CostReport, inventory: InventoryReport) -> None:
        findings = self.query_one("#inventory-findings", Static)
        chart = self.query_one("#cost-chart", Static)
        width = chart.content_size.width or CHART_WIDTH  # inside the border and padding
        findings.update(_lines(findings_lines(inventory), width))
        projected = projection_line(report)
        chart.border_title = f"monthly cost, {report.price_sheet}" + (", projected (e)" if projected else "")
        # The projection's line first: at 80x24 the chart's end is below the fold.
        chart.update(_lines([*([projected] if projected else []), *cost_chart(report, width),
                             cost_summary(report)], width))
        sync_table(self.query_one("#cost-lines", DataTable),
                   _line_rows(report.broker_attached, "(a)") + _line_rows(report.object_storage, "(b)"))
        self.query_one("#cost-assumptions", Static).update(
            Text("assumptions:\n" + "\n".join(f"- {a}" for a in report.assumptions), style="dim"))
