"""The process-wide frame budget: accounting, first-come-first-served waiting, and the Kafka
frame reader that reserves from it before buffering a large frame body."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing

from appliance.errors import ProtocolError
from appliance.transport.frame_budget import SMALL_FRAME, FrameBudget, reserve
from appliance.transport.framing import FrameReader, FrameTooLargeError

KIB = 1 << 10


def test_reservations_are_granted_in_arrival_order_without_overtaking():
    budget = FrameBudget(100)
    assert budget.try_reserve(60)
    woken: list[str] = []
    big = budget.enqueue(50, lambda: woken.append("big"))
    assert not budget.try_reserve(10), "a small frame must not overtake a queued large one"
    small = budget.enqueue(10, lambda: woken.append("small"))
    budget.release(60)
    assert woken == ["big", "small"] and big.granted and small.granted
    assert budget.in_use == 60 and budget.peak == 60 and budget.waits == 2
    budget.release(50)
    budget.release(10)
    assert budget.in_use == 0


def test_a_cancelled_waiter_takes_nothing_and_unblocks_those_behind_it():
    budget = FrameBudget(100)
    assert budget.try_reserve(90)
    woken: list[int] = []
    head = budget.enqueue(50, lambda: woken.append(50))
    budget.enqueue(10, lambda: woken.append(10))
    budget.cancel(head)
    assert woken == [10] and budget.in_use == 100 and budget.waiting == 0


def test_a_frame_larger_than_the_whole_budget_is_refused_and_counted():
    budget = FrameBudget(100)
    assert budget.fits(100)
    assert not budget.fits(101)
    assert budget.refused == 1


async def test_reserve_waits_for_room_and_cancellation_returns_nothing():
    budget = FrameBudget(100)
    await reserve(budget, 80)
    done = trio.Event()

    async def second() -> None:
        await reserve(budget, 40)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set() and budget.waiting == 1
        budget.release(80)
        await done.wait()
    assert budget.in_use == 40
    with trio.move_on_after(0.05):
        await reserve(budget, 70)
    assert budget.in_use == 40 and budget.waiting == 0


def _frame(size: int) -> bytes:
    return struct.pack(">i", size) + bytes([7]) * size


async def test_the_reader_reserves_a_large_frame_before_its_body_and_releases_when_done():
    budget = FrameBudget(300 * KIB)
    send, recv = trio.testing.memory_stream_pair()
    reader = FrameReader(recv, 1 << 20, budget=budget)
    big = _frame(200 * KIB)
    await send.send_all(_frame(100) + big[:1000])
    assert await reader.read_frame() == bytes([7]) * 100
    assert budget.in_use == 0, "small frames skip the budget"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.send_all, big[1000:])
        frame = await reader.read_frame()
    assert len(frame) == 200 * KIB and budget.in_use == len(big)
    reader.done()
    assert budget.in_use == 0


async def test_a_reader_waits_while_the_budget_is_spent_and_reads_on_once_it_frees():
    budget = FrameBudget(300 * KIB)
    await reserve(budget, 250 * KIB)  # another connection's frame
    send, recv = trio.testing.memory_stream_pair()
    reader = FrameReader(recv, 1 << 20, budget=budget)
    got: list[bytes] = []

    async def read() -> None:
        got.append(await reader.read_frame())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await send.send_all(_frame(100 * KIB)[:1000])
        await trio.testing.wait_all_tasks_blocked()
        assert budget.waiting == 1 and not got
        budget.release(250 * KIB)
        await send.send_all(_frame(100 * KIB)[1000:])
    assert len(got[0]) == 100 * KIB
    reader.close()
    assert budget.in_use == 0


async def test_frames_beyond_the_budget_or_too_slow_close_the_connection():
    budget = FrameBudget(64 * KIB)
    send, recv = trio.testing.memory_stream_pair()
    reader = FrameReader(recv, 1 << 20, budget=budget)
    await send.send_all(struct.pack(">i", 100 * KIB))
    with pytest.raises(FrameTooLargeError, match="in-flight frame budget"):
        await reader.read_frame()
    assert budget.refused == 1

    send, recv = trio.testing.memory_stream_pair()
    reader = FrameReader(recv, 1 << 20, budget=budget, frame_timeout=0.2)
    await send.send_all(_frame(SMALL_FRAME * 2)[:100])
    with pytest.raises(ProtocolError, match="not completed within"):
        await reader.read_frame()
    reader.close()
    assert budget.in_use == 0
