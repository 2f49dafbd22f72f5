"""The operator actions in the command palette (ctrl+p), driven by Pilot.

Textual runs on asyncio and this suite under trio: each scenario runs with asyncio.run.
"""

from __future__ import annotations

import asyncio

from textual.command import CommandPalette
from textual.widgets import OptionList

from appliance.admin.client import AdminClient
from tests.tui.fixed_source import FixedSource
from tests.tui.screen import screen_text
from tests.tui.test_pilot import SIZE, console, produce, until
from tui.app import MillstreamApp
from tui.commands import COMMANDS
from tui.dialogs import ConfirmDialog, Projection, ProjectionDialog


def options(app) -> list[str]:
    return [str(o.prompt) for o in app.screen.query_one(OptionList).options] if isinstance(
        app.screen, CommandPalette) else []


async def run_command(pilot, query: str, name: str) -> None:
    """Open the palette, type `query`, wait for `name` among the hits and run the first hit."""
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), what="command palette")
    await pilot.press(*query)
    await until(pilot, lambda: options(pilot.app)[:1] and name in options(pilot.app)[0],
                what=f"{name!r} first among the hits")
    await pilot.press("enter")


def test_the_palette_lists_every_operator_action():
    async def scenario() -> None:
        app = MillstreamApp(FixedSource(), refresh_interval=3600)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="command palette")
            await until(pilot, lambda: len(options(app)) > len(COMMANDS), what="discovered commands")
            shown = "\n".join(options(app))
            for name in ("Issue certificate", "Revoke certificate", "Reload rules", "Pause uplink",
                         "Resume uplink", "Cost projection"):
                assert name in shown, shown

    asyncio.run(scenario())


def test_reload_rules_from_the_palette_asks_then_reports_the_refusal():
    async def scenario() -> None:
        app = MillstreamApp(FixedSource(), refresh_interval=3600)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await app.poll_now()
            await run_command(pilot, "reload", "Reload rules")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirmation")
            assert app.tab == "security" and "Reload the rules from" in screen_text(app)
            await pilot.press("y")
            await until(pilot, lambda: "could not reload the rules" in screen_text(app), what="error notification")
            assert "rules rejected, the previous rules" in screen_text(app)

    asyncio.run(scenario())


def test_pause_uplink_from_the_palette_on_another_tab():
    async def scenario() -> None:
        app = MillstreamApp(FixedSource(), refresh_interval=3600)
        async with app.run_test(size=SIZE) as pilot:
            await app.poll_now()  # on the Overview: the uplink's state is not known yet
            await run_command(pilot, "pause up", "Pause uplink")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirmation")
            assert app.tab == "uplink" and "Pause the uplink to" in screen_text(app)
            await pilot.press("n")

    asyncio.run(scenario())


def test_cost_projection_through_the_palette(appliance):
    AdminClient(appliance.admin_url).create_topic("line3.telemetry", 1)
    produce(appliance, "line3.telemetry", 100)

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "records in" in screen_text(app), what="overview")
            await run_command(pilot, "cost proj", "Cost projection")
            await until(pilot, lambda: isinstance(app.screen, ProjectionDialog), what="projection dialog")
            assert app.tab == "cost"
            await pilot.press("3", "enter")
            await until(pilot, lambda: "x3: (a)" in screen_text(app), what="projected totals")
            assert app.projection == Projection(3.0, None)

    asyncio.run(scenario())
