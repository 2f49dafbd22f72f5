"""Snapshots of the main screens at 80x24 with fixed data (pytest-textual-snapshot).

Update after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update` and
review the SVGs in tests/tui/__snapshots__/.
"""

from __future__ import annotations

from tests.tui.fixed_source import FixedSource, history
from tui.app import MillstreamApp


def fixed_app() -> MillstreamApp:
    app = MillstreamApp(FixedSource(), refresh_interval=3600)  # no timer ticks: polls only on demand
    app.rates = history()
    return app


async def settle(pilot) -> None:
    await pilot.app.poll_now()
    await pilot.pause()


def test_overview(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=settle)


def test_topics(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down")  # select the telemetry topic: its partitions and configs show

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_create_topic_dialog(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("c", *"plant1.line4.telemetry", "tab", "backspace", "6", "tab", *"3d")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_delete_confirmation(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("d")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_groups(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)
