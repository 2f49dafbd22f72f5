"""The Security tab and the Overview warnings driven by Pilot against a real segmented appliance
(mTLS listeners, rules, certificates from `millstream pki issue`), with denials provoked by a real
Kafka client over TLS; and an object-store failure under a running plant."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import KafkaError, Producer

from appliance.admin.client import AdminClient
from tests.harness import REPO
from tests.security.segmented import Segmented, pki_issue
from tests.tui.screen import screen_text
from tests.tui.test_pilot import SIZE, console, until
from tui.security import SecurityPane


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    app = Segmented(tmp_path_factory.mktemp("tuisec") / "data").start()
    try:
        yield app
    finally:
        app.stop()


def admin_url(node: Segmented) -> str:
    return f"http://127.0.0.1:{node.ports['admin']}"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MILLSTREAM_ADMIN", None)
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=REPO)


def denied_produce(node: Segmented, cert, topic: str) -> None:
    """A confluent-kafka producer with a plant-apps certificate writing outside its conduit."""
    reports: list = []
    p = Producer({"bootstrap.servers": node.addr("kafka-plant"), "security.protocol": "SSL",
                  "ssl.ca.location": str(cert.ca_path), "ssl.certificate.location": str(cert.cert_path),
                  "ssl.key.location": str(cert.key_path), "message.timeout.ms": 8000})
    p.produce(topic, b"x", callback=lambda err, msg: reports.append(err))
    p.flush(15)
    assert reports and reports[0] is not None and reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_security_tab_shows_the_matrix_a_real_denial_and_a_real_certificate(node):
    mes = pki_issue(node.data_dir, "plant-apps", "mes-1")  # issued with the CLI, behind the appliance's back
    denied_produce(node, mes, "secret.tuisec")

    async def scenario() -> None:
        app = console(admin_url(node))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("6")
            await until(pilot, lambda: "authorization ON" in screen_text(app), what="the security summary")
            matrix = screen_text(app)
            row = next(line for line in matrix.splitlines() if "plant-apps" in line and "prod" in line)
            assert "prod,cons,create" in row  # the "apps" conduit: plant-apps reaches kafka-plant
            assert "kafka-plant" in matrix and "mqtt-cell" in matrix

            await pilot.press("v")  # Denials
            await until(pilot, lambda: "secret.tuisec" in screen_text(app), what="the denial")
            line = next(x for x in screen_text(app).splitlines() if "secret.tuisec" in x)
            assert "plant-apps/mes-1" in line and "default" in line
            assert "by listener: kafka-plant" in screen_text(app)

            await pilot.press("v")  # Certificates
            await until(pilot, lambda: "plant-apps/mes-1" in screen_text(app), what="the issued certificate")
            line = next(x for x in screen_text(app).splitlines() if "plant-apps/mes-1" in x)
            assert mes.record.serial[:10] in line and "valid" in line and mes.record.not_after[:10] in line

    asyncio.run(scenario())


def test_issue_and_revoke_from_the_console_and_the_expiry_warning(node):
    url = admin_url(node)

    async def scenario() -> None:
        app = console(url)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("6")
            await until(pilot, lambda: "authorization ON" in screen_text(app), what="the security tab")
            # a bad request is a notification, not a traceback
            await pilot.press("i", *"no such zone!", "tab", *"press-8", "enter")
            await until(pilot, lambda: "could not issue" in screen_text(app), what="the refusal")

            await pilot.press("i", *"cell-line3", "tab", *"press-8", "tab", *["backspace"] * 3, "3")
            await until(pilot, lambda: "cell-line3/press-8, valid 3" in screen_text(app), what="the dialog summary")
            await pilot.press("enter")
            await until(pilot, lambda: "issued cell-line3/press-8" in screen_text(app), what="the notification")
            toast = "".join(x.strip(" │▌▐▎▊╭╮╰╯─") for x in screen_text(app).splitlines())  # a wrapped notification
            assert "pki/out/cell-line3.press-8/press-8.crt" in toast, screen_text(app)  # where the files went

            certs = {c.identity: c for c in AdminClient(url).certificates().certificates}
            issued = certs["cell-line3/press-8"]
            assert issued.status == "valid" and 2.9 < issued.days_left <= 3.0
            listed = cli("pki", "list", "--data-dir", str(node.data_dir))
            assert issued.serial in listed.stdout and "cell-line3" in listed.stdout

            # the warning: on the Overview, and in `millstream status`
            await pilot.press("1")
            await until(pilot, lambda: "certificate cell-line3/press-8 expires in 3 days" in screen_text(app),
                        what="the expiry warning")
            status = cli("status", "--admin", url)
            assert status.returncode == 0, status.stderr
            assert f"warning   certificate cell-line3/press-8 expires in 3 days, {issued.not_after}" in status.stdout
            assert "millstream_warnings{kind=\"certificate_expiring\"} 1" in AdminClient(url).metrics_text()

            # revoke it from the Certificates view
            await pilot.press("6", "v", "v")
            await until(pilot, lambda: "cell-line3/press-8" in screen_text(app), what="the certificate row")
            table = app.query_one(SecurityPane).query_one("#certs-table")
            table.move_cursor(row=[r.value for r in table.rows].index(issued.serial))
            await pilot.press("x")
            await until(pilot, lambda: "Revoke certificate cell-line3/press-8" in screen_text(app), what="the question")
            await pilot.press("y")
            await until(pilot, lambda: "revoked" in next(x for x in screen_text(app).splitlines()
                                                         if "cell-line3/press-8" in x), what="the revoked row")
            assert {c.serial: c for c in AdminClient(url).certificates().certificates}[issued.serial].revoked
            assert "revoked" in next(x for x in cli("pki", "list", "--data-dir", str(node.data_dir)).stdout.splitlines()
                                     if issued.serial in x)
            await pilot.press("1")  # a revoked certificate no longer warns
            await until(pilot, lambda: "press-8" not in screen_text(app), what="the warning to clear")

    asyncio.run(scenario())


def test_reload_rules_from_the_console(node):
    good = node.rules_path.read_text()

    async def scenario() -> None:
        app = console(admin_url(node))
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("6")
            await until(pilot, lambda: "authorization ON" in screen_text(app), what="the security tab")
            node.rules_path.write_text(good + '\n[[conduits]]\nname = "broken"\nfrom = "nowhere"\n')
            await pilot.press("r")
            await until(pilot, lambda: "Reload the rules from" in screen_text(app), what="the question")
            await pilot.press("y")
            await until(pilot, lambda: "missing required key 'to'" in screen_text(app), what="the refusal")
            assert "could not reload the rules" in screen_text(app)
            node.rules_path.write_text(good)
            await pilot.press("r")
            await until(pilot, lambda: "Reload the rules from" in screen_text(app), what="the question again")
            await pilot.press("y")
            await until(pilot, lambda: "rules reloaded" in screen_text(app), what="the reload")
            assert AdminClient(admin_url(node)).security().last_reload_error is None

    try:
        asyncio.run(scenario())
    finally:
        node.rules_path.write_text(good)


def test_security_keys_belong_to_the_security_tab():
    from tests.tui.test_snapshots import fixed_app

    async def scenario() -> None:
        app = fixed_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("6")
            await app.poll_now()
            await pilot.press("1")  # focus stays on a (hidden) security table
            assert app.tab == "overview"
            await pilot.press("r", "i", "x")
            await pilot.pause()
            assert app.tab == "overview" and len(app.screen_stack) == 1  # no dialog opened
            await pilot.press("6", "r")
            await until(pilot, lambda: "Reload the rules from /etc/millstream/rules.toml" in screen_text(app),
                        what="the question")

    asyncio.run(scenario())


def test_object_store_failure_warns_on_overview_and_in_status(make_appliance, tmp_path):
    """The local object store made unwritable under a running plant (its directory replaced by a
    file): uploads fail, the warning shows on the Overview, in `millstream status` and /metrics,
    and clears once the store is back."""
    from tests.uplink.helpers import produce

    cfg = tmp_path / "tier.toml"
    cfg.write_text('[storage]\nfsync = false\nupload_interval = "200ms"\n')
    plant = make_appliance("plant", config=cfg).start()
    client = AdminClient(plant.admin_url)
    client.create_topic("line.temp", 1)
    produce(plant.bootstrap, "line.temp", 20)
    objects = plant.data_dir / "objects"

    def wait(cond, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    wait(lambda: client.storage().unuploaded_bytes == 0 and any(objects.rglob("*")), "the first upload")
    objects.rename(tmp_path / "objects.away")
    objects.write_text("not a directory any more")
    try:
        produce(plant.bootstrap, "line.temp", 20)  # acknowledged from the WAL while the store is down

        async def scenario() -> None:
            app = console(plant.admin_url)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "object store unreachable for" in screen_text(app), timeout=30,
                            what="the object store warning")
                assert "ERROR" in screen_text(app)

        asyncio.run(scenario())
        status = cli("status", "--admin", plant.admin_url)
        assert "health    error" in status.stdout
        line = next(x for x in status.stdout.splitlines() if "object store unreachable" in x)
        assert line.startswith("critical  object store unreachable for") and "uploads failing" in line
        assert 'millstream_warnings{kind="object_store"} 1' in client.metrics_text()
    finally:
        objects.unlink()
        (tmp_path / "objects.away").rename(objects)
    wait(lambda: client.status().health == "ok" and client.storage().unuploaded_bytes == 0, "the store to recover")
    assert client.warnings() == [] and "object store" not in cli("status", "--admin", plant.admin_url).stdout
