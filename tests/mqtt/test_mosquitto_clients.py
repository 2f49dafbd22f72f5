"""End to end with Debian's mosquitto_pub / mosquitto_sub as subprocesses."""

import subprocess

import pytest
import trio

VERSIONS = pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])


async def pub(port, topic, message, *args, version="mqttv5"):
    with trio.fail_after(5):
        result = await trio.run_process(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", version,
                                         "-t", topic, "-m", message, *args], capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr


class Sub:
    """mosquitto_sub running in the background; `lines()` waits for it to exit."""

    def __init__(self, port, topic_filter, count, *args, version="mqttv5"):
        self.argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", version, "-t", topic_filter,
                     "-C", str(count), "-W", "5", "-v", *args]
        self.proc: trio.Process | None = None

    async def start(self, server, wait: bool = True):
        before = len(server.broker.trie)
        self.proc = await trio.lowlevel.open_process(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if wait:  # not when the subscriber gets all it waits for at once (and is gone again)
            await subscribed(server, before + 1)

    async def lines(self):
        assert self.proc is not None
        out = b""
        with trio.fail_after(6):
            while chunk := await self.proc.stdout.receive_some(65536):
                out += chunk
            await self.proc.wait()
        return out.decode().splitlines()


async def subscribed(server, count):
    """mosquitto_sub prints nothing once subscribed: watch the broker's subscription count instead."""
    with trio.fail_after(5):
        while len(server.broker.trie) < count:
            await trio.sleep(0.01)


@VERSIONS
async def test_every_qos(mqtt_server, version):
    sub = Sub(mqtt_server.port, "m/#", 3, "-q", "2", version=version)
    await sub.start(mqtt_server)
    for qos in ("0", "1", "2"):
        await pub(mqtt_server.port, f"m/q{qos}", f"hello {qos}", "-q", qos, version=version)
    assert sorted(await sub.lines()) == ["m/q0 hello 0", "m/q1 hello 1", "m/q2 hello 2"]


@VERSIONS
async def test_retained(mqtt_server, version):
    await pub(mqtt_server.port, "r/state", "running", "-r", "-q", "1", version=version)
    sub = Sub(mqtt_server.port, "r/+", 1, version=version)
    await sub.start(mqtt_server, wait=False)
    assert await sub.lines() == ["r/state running"]


@VERSIONS
async def test_will_on_killed_client(mqtt_server, version):
    watcher = Sub(mqtt_server.port, "alive/#", 1, "-q", "1", version=version)
    await watcher.start(mqtt_server)
    dev = await trio.lowlevel.open_process(
        ["mosquitto_sub", "-p", str(mqtt_server.port), "-V", version, "-t", "cmd/dev", "-i", "dev-1",
         "--will-topic", "alive/dev-1", "--will-payload", "dead", "--will-qos", "1"],
        stdout=subprocess.DEVNULL)
    await subscribed(mqtt_server, 2)
    dev.kill()  # SIGKILL: the socket closes without DISCONNECT
    await dev.wait()
    assert await watcher.lines() == ["alive/dev-1 dead"]


@VERSIONS
async def test_persistent_session_across_client_reconnect(mqtt_server, version):
    session = ["-c", "-i", "hist-1", "-q", "1"] + (["-x", "300"] if version == "mqttv5" else [])
    first = Sub(mqtt_server.port, "hist/#", 1, *session, version=version)
    await first.start(mqtt_server)
    await pub(mqtt_server.port, "hist/a", "one", "-q", "1", version=version)
    assert await first.lines() == ["hist/a one"]  # exits after one message: the session stays
    for word in ("two", "three"):
        await pub(mqtt_server.port, "hist/a", word, "-q", "1", version=version)
    again = Sub(mqtt_server.port, "hist/#", 2, *session, version=version)
    await again.start(mqtt_server, wait=False)
    assert await again.lines() == ["hist/a two", "hist/a three"]


async def test_shared_subscription_between_mosquitto_subscribers(mqtt_server):
    subs = [Sub(mqtt_server.port, "$share/grp/work/#", 3, "-q", "1") for _ in range(2)]
    for s in subs:
        await s.start(mqtt_server)
    for i in range(6):
        await pub(mqtt_server.port, f"work/{i}", str(i), "-q", "1")
    results = [await s.lines() for s in subs]
    assert [len(r) for r in results] == [3, 3]
    assert sorted(line for r in results for line in r) == [f"work/{i} {i}" for i in range(6)]
