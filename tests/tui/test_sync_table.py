"""A table updated in place keeps its rows and cursor, and a cell that grows widens its column.

Textual runs on asyncio and this suite under trio: the Pilot scenario runs with asyncio.run."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from tests.tui.screen import screen_text
from tui.panes import sync_table


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


def test_a_column_left_too_narrow_mends_on_the_next_refresh():
    async def scenario() -> None:
        app = OneTable()
        async with app.run_test(size=(60, 8)) as pilot:
            table = app.query_one("#t", DataTable)
            rows = [("a", ["existing", "127.0.0.1:50123"])]
            sync_table(table, rows)
            await pilot.pause()
            for column in table.columns.values():  # as CI saw it: measured at the headers' widths
                column.content_width = len(str(column.label))
            table.refresh(layout=True)
            await pilot.pause()
            assert "existing" not in screen_text(app)
            sync_table(table, rows)  # the next poll, nothing changed
            await pilot.pause()
            assert "existing" in screen_text(app) and "127.0.0.1:50123" in screen_text(app)

    asyncio.run(scenario())
