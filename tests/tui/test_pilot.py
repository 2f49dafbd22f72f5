"""The console driven by Textual's Pilot against a real appliance process and its admin API.

Textual runs on asyncio, while this suite runs async tests under trio, so each test is a plain
function that runs its scenario with asyncio.run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient as KafkaAdmin

from appliance.admin.client import AdminClient, AsyncAdminClient
from tests.harness import free_port
from tests.tui.screen import screen_text
from tui.app import MillstreamApp

SIZE = (80, 24)


async def until(pilot, cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)
    await pilot.pause()  # let the rest of the same update reach the screen


def kafka_topics(app) -> dict:
    return KafkaAdmin({"bootstrap.servers": app.bootstrap}).list_topics(timeout=10).topics


def produce(app, topic: str, n: int, partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": app.bootstrap, "linger.ms": 0})
    for i in range(n):
        p.produce(topic, b"value-%d" % i, partition=partition)
    assert p.flush(15) == 0


def console(url: str) -> MillstreamApp:
    return MillstreamApp(AsyncAdminClient(url), refresh_interval=0.2)


def test_overview_shows_the_running_appliance(appliance):
    AdminClient(appliance.admin_url).create_topic("line3", 2)
    produce(appliance, "line3", 7)

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "records in" in screen_text(app) and "total 7" in screen_text(app),
                        what="overview data")
            text = screen_text(app)
            assert "plant node 1" in text and "OK" in text
            assert "topics 1, 2 partitions" in text
            assert f"kafka 127.0.0.1:{appliance.kafka_port}" in text
            assert "no warnings" in text
            assert "WAL" in text and "of budget" in text
            produce(appliance, "line3", 50)
            await until(pilot, lambda: "total 57" in screen_text(app), what="new records")
            assert max(app.rates.series("records_total")) > 0  # the sparkline saw the burst

    asyncio.run(scenario())


def test_topics_create_alter_delete_from_the_console(appliance):
    AdminClient(appliance.admin_url).create_topic("existing", 3)
    produce(appliance, "existing", 4, partition=2)

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("2")
            await until(pilot, lambda: "existing" in screen_text(app), what="topic list")
            text = screen_text(app)
            assert "retention" in text and "7d" in text
            assert any(line.split()[1:4] == ["2", "0", "4"] for line in text.splitlines()
                       if line.startswith("│ 2")), text  # partition 2: log start 0, high watermark 4

            await pilot.press("c")
            await pilot.press(*"press.line7", "tab", "backspace", "4", "tab", *"12h")
            await pilot.pause()
            assert "Create 'press.line7' with 4 partition(s), retention 12h." in screen_text(app)
            await pilot.press("enter")
            await until(pilot, lambda: "press.line7" in app.query_one("TopicsPane").topics, what="created topic")
            assert len(kafka_topics(appliance)["press.line7"].partitions) == 4
            assert AdminClient(appliance.admin_url).topic("press.line7").configs["retention.ms"] == str(12 * 3600_000)

            # move the cursor to press.line7 (sorted after "existing") and shorten its retention
            await pilot.press("down")
            await until(pilot, lambda: app.query_one("TopicsPane").selected.name == "press.line7", what="cursor")
            await pilot.press("r")
            await pilot.pause()
            assert "Retention of press.line7" in screen_text(app)
            await pilot.press(*["backspace"] * 5, *"30m", "enter")
            await until(pilot, lambda: AdminClient(appliance.admin_url).topic("press.line7")
                        .configs["retention.ms"] == "1800000", what="retention change")

            await pilot.press("d")
            await pilot.pause()
            assert "Delete topic press.line7" in screen_text(app)
            await pilot.press("n")  # cancel first: nothing happens
            await pilot.pause(0.3)
            assert "press.line7" in kafka_topics(appliance)
            await pilot.press("d", "y")
            await until(pilot, lambda: "press.line7" not in app.query_one("TopicsPane").topics, what="deletion")
            assert "press.line7" not in kafka_topics(appliance)

            # an error from the appliance becomes a notification, the console carries on
            app.clear_notifications()  # the earlier ones could fill the 24 lines
            await pilot.press("c", *"existing", "enter")
            await until(pilot, lambda: "already exists" in screen_text(app), what="error notification")
            assert app.is_running

    asyncio.run(scenario())


def test_unreachable_appliance_is_a_notification_not_a_crash(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        app = console(url)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: "appliance unreachable" in screen_text(app), what="notification")
            assert "(unreachable)" in app.sub_title
            await pilot.press("2", "3", "1")
            await pilot.pause(0.5)
            assert app.is_running

    asyncio.run(scenario())


def test_a_refresh_tick_while_the_console_closes_is_ignored(tmp_path):
    # the refresh timer may fire once more after the app's screens are gone (seen in CI at exit)
    app = console(f"http://127.0.0.1:{free_port()}")
    assert app.screen_stack == []
    app.poll()  # no ScreenStackError
    assert not app._polling


def test_groups_screen_shows_lag_per_partition(appliance):
    AdminClient(appliance.admin_url).create_topic("lagging", 2)
    produce(appliance, "lagging", 10, partition=0)
    produce(appliance, "lagging", 5, partition=1)
    c = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "mes-reader",
                  "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition("lagging", 0, 4), TopicPartition("lagging", 1, 5)], asynchronous=False)
    finally:
        c.close()

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3")
            await until(pilot, lambda: "mes-reader" in screen_text(app), what="group")
            rows = [line.split()[1:6] for line in screen_text(app).splitlines() if "lagging" in line]
            assert ["lagging", "0", "4", "10", "6"] in rows and ["lagging", "1", "5", "5", "0"] in rows

    asyncio.run(scenario())


def test_cost_tab_draws_the_bar_chart_from_live_measurements(appliance):
    AdminClient(appliance.admin_url).create_topic("line3.telemetry", 2)
    produce(appliance, "line3.telemetry", 200)

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("8")
            await until(pilot, lambda: "(a) broker-attached RF3" in screen_text(app), what="cost chart")
            text = screen_text(app)
            assert "8 Cost" in text and "(b) object storage" in text
            assert "no [[streams]]" in text and "unowned: line3.telemetry" in text and "1 warning" in text
            rows = {line.split("│")[1].split()[0]: line for line in text.splitlines()
                    if line.startswith("│ ") and line.count("│") >= 3}
            assert "█" in rows["brokers"] and "█" in rows["total"]  # bars on both sides
            assert "█" in rows["block"].split("│")[1] or "▏" in rows["block"].split("│")[1]
            costs = app.query_one("#cost-lines").row_count
            assert costs > 8  # every line item of both designs in the table below the chart

    asyncio.run(scenario())
