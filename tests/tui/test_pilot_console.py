"""The console's Clients, topic tail, Uplink and Logs screens driven by Pilot against real
appliances, with data from real clients (paho, confluent-kafka, a plant-to-cloud uplink)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, Producer

from appliance.admin.client import AdminClient
from tests.tui.screen import screen_text
from tests.tui.test_pilot import SIZE, console, until
from tests.uplink.helpers import produce, start_pair, watermarks
from tui.tail import TopicScreen


def test_clients_tab_shows_mqtt_sessions_and_kafka_connections(appliance):
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="press-7", protocol=mqtt.MQTTv5)
    sub.connect("127.0.0.1", appliance.mqtt_port)
    sub.loop_start()
    sub.subscribe("line3/#", qos=1)
    AdminClient(appliance.admin_url).create_topic("line3", 1)
    consumer = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "g-" + uuid.uuid4().hex,
                         "client.id": "historian-7"})
    consumer.subscribe(["line3"])  # a group member keeps its connections (heartbeats, fetches)
    consumer.poll(0.5)

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("4")

            def row(name: str) -> str:
                return next((line for line in screen_text(app).splitlines() if name in line), "")

            # the tables size their columns to new rows on an idle pass: wait for the rows as drawn after it
            await until(pilot, lambda: "127.0.0.1:" in row("press-7") and "127.0.0.1:" in row("historian-7"),
                        what="both clients")
            mqtt_row = row("press-7")
            assert "online" in mqtt_row and " 5 " in mqtt_row
            sub.disconnect()  # a clean session ends with its connection
            await until(pilot, lambda: "press-7" not in screen_text(app), what="the session to end")

    try:
        asyncio.run(scenario())
    finally:
        sub.loop_stop()
        consumer.close()


def test_topic_tail_follows_a_kafka_producer_and_replays(appliance):
    AdminClient(appliance.admin_url).create_topic("press.line7", 2)
    p = Producer({"bootstrap.servers": appliance.bootstrap, "linger.ms": 0})
    t0 = (int(time.time()) - 3600) * 1000  # an hour ago, whole seconds

    def send(first: int, n: int) -> None:
        for i in range(first, first + n):
            p.produce("press.line7", key=b"press-7", value=json.dumps({"seq": i, "temp_c": 70 + i}).encode(),
                      partition=0, timestamp=t0 + i * 1000, headers=[("unit", b"degC")])
        assert p.flush(15) == 0

    send(0, 10)

    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("2")
            await until(pilot, lambda: "press.line7" in screen_text(app), what="the topic")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, TopicScreen) and '"seq": 9' in screen_text(app),
                        what="the latest records")
            screen = app.screen
            assert [r.offset for r in screen.records] == list(range(10))
            assert "press.line7  partition 0 of 2  offsets 0-10" in screen_text(app)

            send(10, 3)  # the tail follows new records
            await until(pilot, lambda: '"seq": 12' in screen_text(app), what="followed records")
            await pilot.press("f")  # JSON: compact in the table, indented below
            await until(pilot, lambda: '{"seq":12,"temp_c":82}' in screen_text(app), what="JSON rendering")
            assert '"seq": 12,' in screen_text(app) and "header unit: degC" in screen_text(app)

            await pilot.press("o", *"4", "enter")  # replay from an offset
            await until(pilot, lambda: screen.records and screen.records[0].offset == 4, what="replay from offset 4")
            assert [r.offset for r in screen.records] == list(range(4, 13))
            assert "from offset 4" in screen_text(app)

            moment = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((t0 + 7000) / 1000))
            await pilot.press("o", *moment, "enter")  # replay from a moment (UTC)
            await until(pilot, lambda: screen.records and screen.records[0].offset == 7, what="replay from a time")

            await pilot.press("p")  # the other partition is empty
            await until(pilot, lambda: "partition 1 of 2  offsets 0-0" in screen_text(app), what="partition 1")
            assert screen.records == []
            await pilot.press("escape")
            assert not isinstance(app.screen, TopicScreen)

    asyncio.run(scenario())


def test_uplink_pause_from_the_console_stops_forwarding(make_appliance, tmp_path):
    plant, cloud = start_pair(make_appliance, tmp_path, [{"topic": "alarms", "priority": 0}])
    AdminClient(plant.admin_url).create_topic("alarms", 1)
    produce(plant.bootstrap, "alarms", 5)

    def in_cloud() -> int:
        return sum(watermarks(cloud.bootstrap, "plant1.alarms", 1))

    async def scenario() -> None:
        app = console(plant.admin_url)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("5")
            await until(pilot, lambda: "CONNECTED" in screen_text(app) and "sent 5 records" in screen_text(app),
                        timeout=30, what="the uplink forwarding")
            assert "alarms" in screen_text(app) and "plant1.alarms" in screen_text(app)
            assert in_cloud() == 5

            await pilot.press("p")
            await until(pilot, lambda: "Pause the uplink" in screen_text(app), what="the confirmation")
            await pilot.press("n")  # cancelled: still running
            await pilot.pause(0.3)
            assert AdminClient(plant.admin_url).uplink().paused is False
            await pilot.press("p", "y")
            await until(pilot, lambda: "PAUSED" in screen_text(app), what="the paused state")
            assert AdminClient(plant.admin_url).uplink().paused is True

            await asyncio.to_thread(produce, plant.bootstrap, "alarms", 7)
            await until(pilot, lambda: "backlog 7 records" in screen_text(app), what="the backlog")
            await asyncio.sleep(1.0)
            assert in_cloud() == 5  # nothing was forwarded while paused

            await pilot.press("u")
            await until(pilot, lambda: "Resume the uplink? 7 backlogged" in screen_text(app), what="the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: "sent 12 records" in screen_text(app), timeout=30, what="forwarding again")
            assert in_cloud() == 12

    asyncio.run(scenario())


def test_logs_tab_follows_the_appliance_log(appliance):
    async def scenario() -> None:
        app = console(appliance.admin_url)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("7")
            await until(pilot, lambda: "ready role=plant" in screen_text(app), what="the start-up lines")
            assert "following" in screen_text(app)
            await asyncio.to_thread(AdminClient(appliance.admin_url).create_topic, "logged.topic", 1)
            await until(pilot, lambda: "topic=logged.topic" in screen_text(app), what="a new line")
            await pilot.press("f")
            await until(pilot, lambda: "paused (f: follow)" in screen_text(app), what="follow off")

    asyncio.run(scenario())
