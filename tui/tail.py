"""One topic in detail: a live tail of a partition's records, and replay from an offset or a time.

The screen polls `records(offset=next)` once per refresh while it follows, so an idle partition
costs one small request a second and a busy one shows up to `FOLLOW_BATCH` new records a tick.
Keys, header values and values render as text, JSON or hex (`f` cycles); the highlighted record
shows in full below the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from appliance.admin.client import AdminAPIError
from appliance.admin.models import TailRecord, TailResult, TopicInfo
from tui.format import FORMATS, format_timestamp_ms, parse_replay, render_field
from tui.panes import selected_key, sync_table
from tui.source import AdminSource

FIRST_LOAD = 50  # records shown when the screen opens: the latest ones
FOLLOW_BATCH = 200  # records fetched per tick at most while following or replaying
MAX_ROWS = 500  # rows kept on screen; older ones scroll away


def _cell(text: str, width: int, style: str = "") -> Text:
    return Text(text if len(text) <= width else text[: max(1, width - 1)] + "…", style=style)


class TopicScreen(Screen[None]):
    """Records of `topic`, one partition at a time."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("f", "cycle_format", "Format"),
        Binding("space", "toggle_follow", "Follow"),
        Binding("o", "replay", "Replay from"),
        Binding("p", "next_partition", "Partition"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, source: AdminSource, topic: TopicInfo, *, partition: int = 0, refresh_interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.source = source
        self.topic = topic
        self.partition = partition
        self.refresh_interval = refresh_interval
        self.clock = clock
        self.fmt = "text"
        self.follow = True
        self.records: list[TailRecord] = []
        self.next_offset: int | None = None  # None until the first read
        self.last: TailResult | None = None
        self.origin = "latest records"
        self._busy = False

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("", id="tail-summary")
        table = DataTable(id="records-table", cursor_type="row", zebra_stripes=True)
        table.add_column("offset", key="offset")
        table.add_column("time (UTC)", key="time")
        table.add_column("key", key="key")
        table.add_column("value", key="value")
        yield table
        with VerticalScroll(id="record-detail-box"):
            yield Static("", id="record-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.topic.name} [{self.partition}]"
        self.query_one("#records-table", DataTable).focus()
        self.set_interval(self.refresh_interval, self._tick)
        self.load()

    # --- fetching --------------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.follow and not self._busy:
            self.load()

    def load(self, *, offset: int | None = None, timestamp: int | None = None, replace: bool = False) -> None:
        self._busy = True
        self._load(offset, timestamp, replace)

    @work(group="tail", exclusive=True, exit_on_error=False)
    async def _load(self, offset: int | None, timestamp: int | None, replace: bool) -> None:
        await self._fetch(offset, timestamp, replace)

    async def _fetch(self, offset: int | None, timestamp: int | None, replace: bool) -> None:
        try:
            if offset is None and timestamp is None and self.next_offset is not None:
                offset = self.next_offset
            limit = FIRST_LOAD if (offset is None and timestamp is None) else FOLLOW_BATCH
            result = await self.source.records(self.topic.name, self.partition, offset=offset,
                                               timestamp=timestamp, limit=limit)
        except AdminAPIError as e:
            self.notify(e.message, title="tail", severity="error", timeout=8)
            self.follow = False  # one notification, not one a second
            self._show_summary()
            return
        except Exception as e:  # noqa: BLE001 - a notification, never a traceback
            self.notify(f"{type(e).__name__}: {e}", title="tail", severity="error", timeout=8)
            return
        finally:
            self._busy = False
        self.last = result
        if replace:
            self.records = []
        self.next_offset = result.next_offset
        self._append(result.records)
        self._show_summary()

    # --- rendering -------------------------------------------------------------------------------

    def _value_width(self) -> int:
        return max(16, self.app.size.width - 46)  # offset, time and key columns, borders, scrollbar

    def _row(self, r: TailRecord) -> list[object]:
        clock = format_timestamp_ms(r.timestamp)[11:]
        if r.note is not None:
            return [Text(str(r.offset), justify="right"), clock, Text("-", style="dim"),
                    _cell(r.note, self._value_width(), "italic yellow")]
        return [Text(str(r.offset), justify="right"), clock, _cell(render_field(r.key_bytes, self.fmt), 14),
                _cell(render_field(r.value_bytes, self.fmt, mark=True), self._value_width())]

    def _append(self, new: list[TailRecord]) -> None:
        known = {r.offset for r in self.records}
        added = [r for r in new if r.offset not in known]
        table = self.query_one("#records-table", DataTable)
        if not added and table.row_count == len(self.records):
            self._show_detail()  # an idle tick: nothing to render again
            return
        self.records.extend(added)
        del self.records[:-MAX_ROWS]
        self._show_records(to_end=bool(new) and self.follow)

    def _show_records(self, *, to_end: bool = False) -> None:
        """The table from `self.records`, through `sync_table` (which sets the column widths from
        the cells: Textual's own sizing sometimes kept them at the headers' widths); the cursor
        stays on its record, or goes to the newest one (`to_end`)."""
        table = self.query_one("#records-table", DataTable)
        sync_table(table, [(str(r.offset), self._row(r)) for r in self.records])
        if to_end and table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self._show_detail()

    def _show_summary(self) -> None:
        r = self.last
        offsets = f"offsets {r.log_start}-{r.high_watermark}" if r else "offsets ?"
        state = Text("following", style="green") if self.follow else Text("paused", style="yellow")
        self.query_one("#tail-summary", Static).update(Text.assemble(
            (self.topic.name, "bold"), f"  partition {self.partition} of {len(self.topic.partitions)}  {offsets}\n",
            f"{self.origin}, {len(self.records)} shown  format ", (self.fmt, "bold"), "  ", state))

    def _selected(self) -> TailRecord | None:
        key = selected_key(self.query_one("#records-table", DataTable))
        return next((r for r in self.records if str(r.offset) == key), None)

    def _show_detail(self) -> None:
        r = self._selected()
        detail = self.query_one("#record-detail", Static)
        if r is None:
            detail.update(Text("no records yet" if self.last is None or not self.records else "", style="dim"))
            return
        if r.note is not None:
            detail.update(Text(f"offset {r.offset}  {format_timestamp_ms(r.timestamp)}\n{r.note}", style="yellow"))
            return
        text = Text.assemble((f"offset {r.offset}", "bold"), f"  {format_timestamp_ms(r.timestamp)} UTC",
                             ("  (cut to the first 8 KiB)" if r.truncated else "", "yellow"), "\n")
        text.append("key: ", style="bold")
        text.append(render_field(r.key_bytes, self.fmt) + "\n")
        for h in r.headers:
            text.append(f"header {h.key}: ", style="bold")
            text.append(render_field(h.value_bytes, self.fmt) + "\n")
        text.append("value:\n", style="bold")
        text.append(render_field(r.value_bytes, self.fmt, pretty=True, mark=True))
        detail.update(text)

    @on(DataTable.RowHighlighted, "#records-table")
    def _highlighted(self) -> None:
        self._show_detail()

    # --- actions ---------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cycle_format(self) -> None:
        self.fmt = FORMATS[(FORMATS.index(self.fmt) + 1) % len(FORMATS)]
        self._show_records()
        self._show_summary()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        self._show_summary()
        if self.follow:
            self.load()

    def action_next_partition(self) -> None:
        self.partition = (self.partition + 1) % max(1, len(self.topic.partitions))
        self.sub_title = f"{self.topic.name} [{self.partition}]"
        self.next_offset = None
        self.origin = "latest records"
        self.load(replace=True)

    def action_replay(self) -> None:
        def chosen(start: tuple[str, int] | None) -> None:
            if start is None:
                return
            kind, value = start
            self.origin = (f"from offset {value}" if kind == "offset"
                           else f"from {format_timestamp_ms(value)} UTC")
            self.next_offset = None
            self.load(replace=True, **{kind: value})

        self.app.push_screen(ReplayDialog(self.topic.name, self.partition, clock=self.clock), chosen)


class ReplayDialog(ModalScreen[tuple[str, int] | None]):
    """Where to replay from: an offset, a time back from now, or a UTC date-time."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, topic: str, partition: int, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.topic = topic
        self.partition = partition
        self.clock = clock

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Replay {self.topic} partition {self.partition} from", classes="title")
            yield Input(id="start", placeholder="offset (1200), -15m, 2h ago, 2026-11-25 18:00 (UTC)")
            yield Static("", id="summary", classes="summary")
            with Horizontal(classes="buttons"):
                yield Button("Replay", id="replay", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._update_summary()

    def _read(self) -> tuple[str, int]:
        text = self.query_one(Input).value
        if not text.strip():
            raise ValueError("an offset, -15m, 2h ago or a UTC date-time")
        return parse_replay(text, int(self.clock() * 1000))

    @on(Input.Changed)
    def _update_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        try:
            kind, value = self._read()
        except ValueError as e:
            summary.update(Text(str(e)))
            return
        where = f"offset {value}" if kind == "offset" else f"the first record at or after {format_timestamp_ms(value)} UTC"
        summary.update(Text(f"Show records from {where}, then follow."))

    @on(Input.Submitted)
    @on(Button.Pressed, "#replay")
    def _replay(self) -> None:
        try:
            self.dismiss(self._read())
        except ValueError as e:
            self.notify(str(e), severity="error")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
