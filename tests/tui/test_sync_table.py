"""A table updated in place keeps its rows and cursor, and a cell that grows widens its column.

Textual runs on asyncio and this suite under trio: the Pilot scenario runs with asyncio.run."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable
from textual.widgets import _data_table as data_table_module

from tests.tui.screen import screen_text
from tests.tui.test_snapshots import fixed_app, open_tail
from tui.format import format_timestamp_ms, render_field
from tui.panes import sync_table
from tui.tail import TopicScreen


class OneTable(App):
    def compose(self) -> ComposeResult:
        table = DataTable(id="t", cursor_type="row")
        table.add_column("client", key="client")
        table.add_column("peer", key="peer")
        yield table


def test_a_cell_that_grows_in_place_is_shown_whole():
    async def scenario() -> None:
        app = OneTable()
        async with app.run_test(size=(60, 8)) as pilot:
            table = app.query_one("#t", DataTable)
            sync_table(table, [("a", ["press-7", "-"]), ("b", ["press-8", "-"])])
            await pilot.pause()
            table.move_cursor(row=1)
            sync_table(table, [("a", ["press-7", "127.0.0.1:50123"]), ("b", ["press-8", "-"])])
            await pilot.pause()
            assert "127.0.0.1:50123" in screen_text(app)
            assert table.cursor_row == 1  # updated in place, not rebuilt

    asyncio.run(scenario())


@pytest.fixture
def measure_at_most_4(monkeypatch):
    """What CI showed now and then: DataTable's own sizing came out at the headers' widths and
    stayed so ("exist" for "existing", "127." for a peer). Made to happen by a measure that never
    gives more than 4 cells."""
    real = data_table_module.measure
    monkeypatch.setattr(data_table_module, "measure", lambda *a, **k: min(real(*a, **k), 4))


def test_columns_fit_their_cells_whatever_datatable_measures(measure_at_most_4):
    async def scenario() -> None:
        app = OneTable()
        async with app.run_test(size=(60, 8)) as pilot:
            table = app.query_one("#t", DataTable)
            sync_table(table, [("a", ["existing", "-"])])
            await pilot.pause()
            assert "existing" in screen_text(app)
            sync_table(table, [("a", ["existing", "127.0.0.1:50123"])])
            await pilot.pause()
            assert "127.0.0.1:50123" in screen_text(app)

    asyncio.run(scenario())


def test_the_topic_tail_shows_whole_cells_whatever_datatable_measures(measure_at_most_4):
    # The tail screen's table goes through sync_table too.
    async def scenario() -> None:
        app = fixed_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await open_tail(pilot)
            screen = app.screen
            assert isinstance(screen, TopicScreen) and screen.records
            r = next(r for r in reversed(screen.records) if r.key_bytes and r.note is None)
            key, value = render_field(r.key_bytes, "text"), render_field(r.value_bytes, "text")
            assert 4 < len(key) <= 14 and len(value) > 20  # cells the clamped measure would cut
            rows = [line for line in screen_text(app).splitlines() if f" {r.offset} " in line]
            assert rows, f"no row shows offset {r.offset} whole:\n{screen_text(app)}"
            row = rows[0]
            assert key in row and value[:20] in row and format_timestamp_ms(r.timestamp)[11:] in row

    asyncio.run(scenario())
