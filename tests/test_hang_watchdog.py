"""The hang watchdog every trio test runs under (tests/hang_watchdog.py)."""

from __future__ import annotations

import pytest
import trio

from tests.hang_watchdog import run_with_watchdog


def test_a_hung_test_fails_naming_where_it_waited():
    async def stuck():
        async def forever():
            await trio.Event().wait()
        async with trio.open_nursery() as n:
            n.start_soon(forever, name="stuck-child")
    with pytest.raises(AssertionError) as e:
        run_with_watchdog(stuck, limit=0.5)
    assert "stuck-child" in str(e.value) and "forever" in str(e.value)


def test_a_quick_test_is_untouched():
    async def quick():
        await trio.sleep(0.01)
        return 42
    assert run_with_watchdog(quick, limit=5) == 42


async def test_runs_under_the_watchdog_and_a_mock_clock_does_not_fire_it(request, autojump_clock):
    assert any(m.kwargs.get("run") is run_with_watchdog for m in request.node.iter_markers("trio"))
    await trio.sleep(3600)  # virtual hour: the wall-clock watchdog does not fire
