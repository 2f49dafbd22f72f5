"""The Overview's warnings stay in a bounded box at 80x24, so the rates remain on screen.

Textual runs on asyncio and this suite under trio: the Pilot scenarios run with asyncio.run."""

from __future__ import annotations

import asyncio
import dataclasses

from textual.widgets import Static

from appliance.admin.models import Alert
from tests.tui.fixed_source import ALERTS, FixedSource, history, status
from tests.tui.screen import screen_text
from tui.app import MillstreamApp
from tui.panes import MAX_WARNING_LINES, warnings_text


def test_three_lines_at_most_critical_first():
    text = warnings_text(status()).plain.splitlines()
    assert len(ALERTS) == 5 and len(text) == MAX_WARNING_LINES == 3
    assert text[0].startswith("\u2716 object store unreachable")
    assert text[1].startswith("\u2716 uplink to cloud.example:9093 disconnected")  # the 4th, but critical
    assert text[2].startswith("! WAL uses 83%")


def test_no_alerts_and_older_appliances_text_warnings():
    assert warnings_text(dataclasses.replace(status(), alerts=[], warnings=[])).plain == "\u2714 no warnings"
    older = dataclasses.replace(status(), alerts=[], warnings=["disk nearly full"])
    assert warnings_text(older).plain == "! disk nearly full"


def test_rates_stay_on_an_80x24_screen_with_five_long_warnings():
    async def scenario() -> None:
        app = MillstreamApp(FixedSource(), refresh_interval=3600)
        app.rates = history()
        async with app.run_test(size=(80, 24)) as pilot:
            await app.poll_now()
            await pilot.pause()
            box = app.query_one("#warnings", Static)
            assert box.outer_size.height == MAX_WARNING_LINES + 2  # three lines in the frame
            for label in ("#records-label", "#bytes-label"):
                region = app.query_one(label, Static).region
                assert 0 < region.y and region.bottom <= 23, (label, region)  # above the footer line
            lines = screen_text(app).splitlines()
            assert any("5 warnings" in line for line in lines)
            assert any("+2 more \u2014 see millstream status" in line for line in lines)
            assert any("object store unreachable for 95s" in line and line.rstrip(" \u2503\u2502").endswith("\u2026")
                       for line in lines)  # cut with an ellipsis, not wrapped
            assert any("bytes in" in line for line in lines)

    asyncio.run(scenario())


def test_one_alert_needs_no_count_below():
    one = dataclasses.replace(status(), alerts=[Alert("disk_budget", "warning", "WAL uses 83% of its disk budget")])

    class OneAlert(FixedSource):
        async def status(self):
            return one

    async def scenario() -> None:
        app = MillstreamApp(OneAlert(), refresh_interval=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await app.poll_now()
            await pilot.pause()
            box = app.query_one("#warnings", Static)
            assert box.border_title == "1 warning" and box.border_subtitle is None
            assert box.outer_size.height == 3

    asyncio.run(scenario())
