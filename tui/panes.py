"""The console's tabs: Overview, Topics, Groups. Widgets only render models; the app fetches them."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Sparkline, Static

from appliance.admin.models import (
    Alert,
    GroupInfo,
    Status,
    StorageInfo,
    TopicInfo,
    human_bytes,
    human_duration_ms,
    human_uptime,
)
from tui.format import human_rate

HISTORY = 60  # samples kept for the sparklines (one a refresh: a minute at 1 s)
MAX_WARNING_LINES = 3  # the Overview's warnings box; the rest are counted on its frame


def sync_table(table: DataTable, rows: Sequence[tuple[str, Sequence[object]]]) -> None:
    """Show `rows` (key, cells): update cells in place when the keys are unchanged, so the cursor
    and scroll position stay put; otherwise rebuild and keep the cursor on the same key.

    Column widths are set here, from the cells, never left to DataTable's own sizing (measured on
    an idle pass): on CI that came out at the headers' widths now and then, and stayed so ("exist"
    for "existing", "127." for a peer). A column only grows; growing rebuilds the table."""
    keys = [k for k, _ in rows]
    current = [rk.value for rk in table.rows]
    columns = table.ordered_columns
    needed = [max([_cell_width(c.label), *(_cell_width(cells[i]) for _, cells in rows)]) for i, c in enumerate(columns)]
    grow = any(n > c.width or c.auto_width for n, c in zip(needed, columns, strict=True))
    if keys == current and not grow:
        for key, cells in rows:
            for column, value in zip(columns, cells, strict=True):
                if table.get_cell(key, column.key) != value:
                    table.update_cell(key, column.key, value)
        return
    selected = selected_key(table)
    if grow:
        specs = [(c.label, c.key.value, max(n, 0 if c.auto_width else c.width)) for c, n in zip(columns, needed, strict=True)]
        table.clear(columns=True)
        for label, key, width in specs:
            table.add_column(label, key=key, width=width)
    else:
        table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if selected in keys:
        table.move_cursor(row=keys.index(selected))
    nudge(table)


def _cell_width(value: object) -> int:
    return value.cell_len if isinstance(value, Text) else cell_len(str(value))


def nudge(table: DataTable) -> None:
    """DataTable lays out new rows (its scrollable size) in its idle handler, which runs only
    after the table processes a message of its own; rows added with no message following (no
    cursor move, no focus change) were not laid out. A no-op callback is one."""
    table.call_later(lambda: None)


def selected_key(table: DataTable) -> str | None:
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
    except Exception:  # noqa: BLE001 - cursor outside the rows while the table rebuilds
        return None


def num(value: int | None) -> Text:
    return Text("-" if value is None else str(value), justify="right")


# --- Overview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    uptime_s: float
    records_total: int
    stored_bytes: int
    requests_total: int


class Rates:
    """Per-second rates from successive status samples, timed by the appliance's own uptime."""

    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=HISTORY + 1)

    def add(self, st: Status) -> None:
        s = Sample(st.uptime_s, st.records_total, st.stored_bytes, st.kafka.requests_total)
        if self.samples and s.uptime_s < self.samples[-1].uptime_s:
            self.samples.clear()  # the appliance restarted: old counters mean nothing now
        if self.samples and s.uptime_s == self.samples[-1].uptime_s:
            self.samples[-1] = s  # the same moment polled twice (a tab switch right after a tick)
        else:
            self.samples.append(s)

    def series(self, field: str) -> list[float]:
        out = []
        pairs = list(self.samples)
        for a, b in zip(pairs, pairs[1:]):  # noqa: B905 - consecutive pairs
            dt = b.uptime_s - a.uptime_s
            if dt > 0:
                out.append(max(0.0, (getattr(b, field) - getattr(a, field)) / dt))
        return out

    def latest(self, field: str) -> float:
        s = self.series(field)
        return s[-1] if s else 0.0


class OverviewPane(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("", id="warnings")  # first: what needs the operator comes before the figures
        with Horizontal(id="overview-top"):
            yield Static("connecting...", id="node", classes="panel")
            yield Static("", id="storage", classes="panel")
        with Vertical(id="rates", classes="panel"):
            yield Static("records in", id="records-label", classes="rate-label")
            yield Sparkline([], id="records-spark")
            yield Static("bytes in", id="bytes-label", classes="rate-label")
            yield Sparkline([], id="bytes-spark")

    def show(self, st: Status, storage: StorageInfo, rates: Rates) -> None:
        listeners = "\n".join(f"{listener.name} {listener.address}" for listener in st.listeners)
        health = {"ok": "[b green]OK[/]", "warning": "[b yellow]WARNING[/]"}.get(st.health, "[b red]ERROR[/]")
        self.query_one("#node", Static).update(
            f"[b]{st.role}[/] node {st.node_id} v{st.version} {health}\n"
            f"uptime {human_uptime(st.uptime_s)}\n"
            f"topics {st.topics}, {st.partitions} partitions\n"
            f"kafka {st.kafka.connections} conn {st.kafka.requests_total} req {st.kafka.errors_total} err\n"
            f"{listeners}"
        )
        budget = storage.wal_budget_bytes
        used = f"{100 * storage.wal_bytes / budget:.0f}%" if budget else "-"
        self.query_one("#storage", Static).update(
            f"[b]storage[/] {'[red]' + storage.last_error + '[/]' if storage.last_error else '[green]OK[/]'}\n"
            f"WAL {human_bytes(storage.wal_bytes)}, {used} of budget\n"
            f"not uploaded {human_bytes(storage.unuploaded_bytes)}\n"
            f"stored {human_bytes(storage.stored_bytes)}, {storage.streams} streams\n"
            f"{storage.durable_appends} appends {storage.fsyncs} fsyncs"
        )
        self.query_one("#records-label", Static).update(
            f"records in  [b]{human_rate(rates.latest('records_total'))}[/]   "
            f"requests {human_rate(rates.latest('requests_total'))}   total {st.records_total}"
        )
        self.query_one("#bytes-label", Static).update(
            f"bytes in  [b]{human_rate(rates.latest('stored_bytes'), 'B')}[/]   stored {human_bytes(st.stored_bytes)}"
        )
        # A leading 0 anchors the scale at zero: Sparkline scales from the smallest value, so a
        # steady flow would otherwise draw like no flow (and a single value as a full bar).
        self.query_one("#records-spark", Sparkline).data = [0.0, *rates.series("records_total")]
        self.query_one("#bytes-spark", Sparkline).data = [0.0, *rates.series("stored_bytes")]
        self.query_one("#warnings", Static).update(warnings_text(st))
        self._frame_warnings(st)

    def _frame_warnings(self, st: Status) -> None:
        warnings = self.query_one("#warnings", Static)
        alerts = status_alerts(st)
        warnings.set_class(bool(alerts), "has-warnings")
        warnings.set_class(any(a.severity == "critical" for a in alerts), "has-critical")
        warnings.border_title = f"{len(alerts)} warning{'s' if len(alerts) != 1 else ''}" if alerts else None
        more = len(alerts) - MAX_WARNING_LINES
        warnings.border_subtitle = f"+{more} more — see millstream status" if more > 0 else None


def status_alerts(st: Status) -> list[Alert]:
    """The status alerts, critical ones first (an older appliance sends warnings as text only)."""
    alerts = st.alerts or [Alert("", "warning", w) for w in st.warnings]
    return sorted(alerts, key=lambda a: a.severity != "critical")  # stable: the appliance's order otherwise


def warnings_text(st: Status) -> Text:
    """At most MAX_WARNING_LINES alerts, one line each (the stylesheet cuts a long one with an
    ellipsis): the figures below stay on an 80x24 screen however many there are. The frame's
    bottom edge counts the rest."""
    alerts = status_alerts(st)
    if not alerts:
        return Text.from_markup("[green]\u2714 no warnings[/]")
    text = Text()
    for i, a in enumerate(alerts[:MAX_WARNING_LINES]):
        critical = a.severity == "critical"
        text.append("\n" if i else "")
        text.append("\u2716 " if critical else "! ", style="bold red" if critical else "bold yellow")
        text.append(a.message, style="red" if critical else "")
    return text


# --- Topics --------------------------------------------------------------------------------------


class TopicsPane(Vertical):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.topics: dict[str, TopicInfo] = {}

    def compose(self) -> ComposeResult:
        table = DataTable(id="topics-table", cursor_type="row", zebra_stripes=True)
        table.add_column("topic", key="name")
        table.add_column("parts", key="partitions")
        table.add_column("records", key="records")
        table.add_column("size", key="size")
        table.add_column("retention", key="retention")
        yield table
        with Horizontal(id="topic-detail"):
            partitions = DataTable(id="partitions-table", cursor_type="row")
            partitions.add_column("p", key="p")
            partitions.add_column("start", key="start")
            partitions.add_column("high wm", key="hw")
            partitions.add_column("size", key="size")
            yield partitions
            configs = DataTable(id="configs-table", cursor_type="row")
            configs.add_column("config", key="key")
            configs.add_column("value (*: set on topic)", key="value")
            yield configs

    def show(self, topics: Sequence[TopicInfo]) -> None:
        self.topics = {t.name: t for t in topics}
        table = self.query_one("#topics-table", DataTable)
        sync_table(table, [
            (t.name, [t.name, num(len(t.partitions)), num(t.records), Text(human_bytes(t.size_bytes), justify="right"),
                      human_duration_ms(t.configs.get("retention.ms", ""))])
            for t in topics
        ])
        self.show_detail()

    @property
    def selected(self) -> TopicInfo | None:
        key = selected_key(self.query_one("#topics-table", DataTable))
        return self.topics.get(key) if key else None

    def show_detail(self) -> None:
        t = self.selected
        partitions = self.query_one("#partitions-table", DataTable)
        configs = self.query_one("#configs-table", DataTable)
        if t is None:
            sync_table(partitions, [])
            sync_table(configs, [])
            return
        sync_table(partitions, [
            (str(p.partition), [num(p.partition), num(p.log_start), num(p.high_watermark),
                                Text(human_bytes(p.size_bytes), justify="right")])
            for p in t.partitions
        ])
        sync_table(configs, [
            (k, [k, f"{v}*" if k in t.overrides else v]) for k, v in sorted(t.configs.items())
        ])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "topics-table":
            self.show_detail()


# --- Groups --------------------------------------------------------------------------------------


class GroupsPane(Vertical):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.groups: dict[str, GroupInfo] = {}

    def compose(self) -> ComposeResult:
        table = DataTable(id="groups-table", cursor_type="row", zebra_stripes=True)
        table.add_column("group", key="group")
        table.add_column("state", key="state")
        table.add_column("members", key="members")
        table.add_column("lag", key="lag")
        yield table
        lag = DataTable(id="lag-table", cursor_type="row")
        lag.add_column("topic", key="topic")
        lag.add_column("p", key="p")
        lag.add_column("committed", key="committed")
        lag.add_column("high wm", key="hw")
        lag.add_column("lag", key="lag")
        yield lag

    def show(self, groups: Sequence[GroupInfo]) -> None:
        self.groups = {g.group_id: g for g in groups}
        sync_table(self.query_one("#groups-table", DataTable), [
            (g.group_id, [g.group_id, g.state, num(len(g.members)), num(g.total_lag)]) for g in groups
        ])
        self.show_detail()

    def show_detail(self) -> None:
        key = selected_key(self.query_one("#groups-table", DataTable))
        g = self.groups.get(key) if key else None
        sync_table(self.query_one("#lag-table", DataTable), [] if g is None else [
            (f"{p.topic}/{p.partition}", [p.topic, num(p.partition), num(p.committed), num(p.high_watermark), num(p.lag)])
            for p in g.partitions
        ])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "groups-table":
            self.show_detail()
