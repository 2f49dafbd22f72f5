"""The Cost tab's projection (e: scale factor, retention) driven by Pilot against a real appliance.

Textual runs on asyncio and this suite under trio: each scenario runs with asyncio.run.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from appliance.admin.client import AdminClient
from tests.tui.screen import screen_text
from tests.tui.test_pilot import SIZE, console, produce, until
from tui.dialogs import Projection, ProjectionDialog, parse_projection


def amount(text: str) -> float:
    """A figure as the chart prints it ("2,861", "12.5", "340k") back to a number."""
    text = text.replace(",", "")
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


def test_projection_input_is_checked_before_it_is_sent():
    assert parse_projection("", "") == Projection()
    assert parse_projection("4", "14d") == Projection(4.0, 14 * 86400.0)
    assert parse_projection("x2.5", "") == Projection(2.5, None)
    assert Projection(4.0, 14 * 86400.0).label == "x4, retention 14d"
    for scale, retention, message in (("0", "", "scale must be a number > 0"), ("-1", "", "scale must be"),
                                      ("lots", "", "give a number"), ("", "forever", "use e.g. 14d"),
                                      ("", "a while", "use e.g. 14d"), ("inf", "", "scale must be")):
        try:
            parse_projection(scale, retention)
        except ValueError as e:
            assert message in str(e), (scale, retention, e)
        else:
            raise AssertionError(f"{scale!r} {retention!r} accepted")


def test_projection_from_the_cost_tab(appliance):
    admin = AdminClient(appliance.admin_url)
    admin.create_topic("line3.telemetry", 2)
    produce(appliance, "line3.telemetry", 300)

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("8")
            await until(pilot, lambda: "(a) broker-attached RF3" in screen_text(app), what="cost chart")
            assert "Projection" in screen_text(app)  # the key shows in the footer on this tab

            # invalid input: a notification, the dialog stays open, nothing is sent
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, ProjectionDialog), what="dialog")
            await pilot.press(*"-3", "enter")
            await until(pilot, lambda: "scale must be a number > 0" in screen_text(app), what="notification")
            assert isinstance(app.screen, ProjectionDialog) and app.projection is None

            await pilot.press("backspace", "backspace", "4", "tab", *"14d")
            await pilot.pause()
            assert "Price the measured workload x4, retention 14d" in screen_text(app)
            await pilot.press("enter")
            await until(pilot, lambda: "x4, retention 14d: (a)" in screen_text(app), what="projected totals")
            app.clear_notifications()
            await pilot.pause()
            line = next(x for x in screen_text(app).splitlines() if "x4, retention 14d: (a)" in x)
            shown = re.search(r"\(a\) ([\d,.k]+)  \(b\) ([\d,.k]+)  vs measured \(a\) ([\d,.k]+)  \(b\) ([\d,.k]+)", line)
            assert shown, line
            projected, base = admin.cost(scale=4, retention="14d"), admin.cost()
            # The live rates move a little between the console's request and these: compare within 5%.
            for text, value in zip(shown.groups(), (projected.broker_attached.total, projected.object_storage.total,
                                                    base.broker_attached.total, base.object_storage.total), strict=True):
                assert amount(text) == pytest.approx(value, rel=0.05), (line, text, value)
            assert projected.object_storage.total > base.object_storage.total
            assert app.projection == Projection(4.0, 14 * 86400.0)

            # Clear: back to the measured workload
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, ProjectionDialog), what="dialog")
            assert app.screen.query_one("#scale").value == "4" and app.screen.query_one("#retention").value == "14d"
            await pilot.click("#clear")
            await until(pilot, lambda: "x4, retention 14d: (a)" not in screen_text(app), what="baseline")
            assert app.projection is None and "vs measured" not in screen_text(app)

    asyncio.run(scenario())
