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
    # With three warnings, one critical: they come first, in a red frame.
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


async def tab(pilot, key: str) -> None:
    await pilot.press(key)
    await settle(pilot)


def test_clients(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=lambda pilot: tab(pilot, "4"))


def test_uplink(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=lambda pilot: tab(pilot, "5"))


def test_uplink_pause_confirmation(snap_compare):
    async def run_before(pilot) -> None:
        await tab(pilot, "5")
        await pilot.press("p")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_logs(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=lambda pilot: tab(pilot, "7"))


async def open_tail(pilot) -> None:
    await tab(pilot, "2")
    await pilot.press("down", "enter")  # the telemetry topic's live tail
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_topic_tail_as_json(snap_compare):
    async def run_before(pilot) -> None:
        await open_tail(pilot)
        await pilot.press("f", "up", "up")  # JSON; the highlighted record shows in full below

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_topic_tail_as_hex(snap_compare):
    async def run_before(pilot) -> None:
        await open_tail(pilot)
        await pilot.press("f", "f", "up", "up", "up")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_replay_dialog(snap_compare):
    async def run_before(pilot) -> None:
        await open_tail(pilot)
        await pilot.press("o", *"84541")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_security_conduits(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=lambda pilot: tab(pilot, "6"))


def test_security_denials(snap_compare):
    async def run_before(pilot) -> None:
        await tab(pilot, "6")
        await pilot.press("v")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_security_certificates(snap_compare):
    async def run_before(pilot) -> None:
        await tab(pilot, "6")
        await pilot.press("v", "v")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_issue_certificate_dialog(snap_compare):
    async def run_before(pilot) -> None:
        await tab(pilot, "6")
        await pilot.press("i", *"cell-line3", "tab", *"press-8", "tab", *["backspace"] * 3, *"90")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_cost(snap_compare):
    """Inventory findings and the side-by-side monthly cost as a bar chart (built by the real model)."""
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=lambda pilot: tab(pilot, "8"))


def test_cost_projection(snap_compare):
    """e on the Cost tab: x4 and 14 days priced, the measured totals kept on the line below the chart."""
    async def run_before(pilot) -> None:
        await tab(pilot, "8")
        await pilot.press("e", "4", "tab", *"14d", "enter")
        await pilot.app.workers.wait_for_complete()
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_cost_projection_dialog(snap_compare):
    async def run_before(pilot) -> None:
        await tab(pilot, "8")
        await pilot.press("e", "4", "tab", *"14d")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)
