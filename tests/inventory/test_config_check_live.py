"""`millstream config check --admin URL`: the placement checks against a running appliance's live rates.

A real appliance runs with the site config; a confluent-kafka producer sends a few MiB to a
forwarded stream whose declared plant retention_bytes cannot hold an hour's outage at that rate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Producer

from appliance.admin.client import AdminClient
from tests.harness import REPO, ApplianceProcess, free_port

SITE = """\
[inventory]
worst_wan_outage = "1h"

[[streams]]
topic = "line3.telemetry"
owner = "controls team"
placement = "cloud"
forwarded = true
retention = "2d"
retention_bytes = "1MiB"

[[streams]]
topic = "line3.alarms"
owner = "controls team"
placement = "cloud"
forwarded = true
retention = "2d"
retention_bytes = "100GiB"
"""


def ms(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_config_check_flags_a_too_small_retention_at_the_live_rate(tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    offline = ms("config", "check", str(site))
    assert offline.returncode == 0, offline.stdout + offline.stderr  # nothing measured: no rate error
    assert "rates: not measured (pass --admin URL" in offline.stdout
    assert "not measured yet: cannot check that retention_bytes 1.0 MiB holds a 1h outage" in offline.stdout

    app = ApplianceProcess(tmp_path / "data", config=site).start()
    try:
        admin = AdminClient(app.admin_url)
        admin.create_topic("line3.telemetry", 1)
        admin.create_topic("line3.alarms", 1)
        p = Producer({"bootstrap.servers": app.bootstrap, "linger.ms": 5})
        value = os.urandom(16 * 1024)
        for _ in range(256):  # 4 MiB of telemetry, a few bytes of alarms
            p.produce("line3.telemetry", value)
            p.poll(0)
        p.produce("line3.alarms", b"press-7 over temperature")
        assert p.flush(30) == 0

        deadline = time.monotonic() + 30
        while True:  # the meter counts as the broker appends; wait until it has seen all of it
            totals = {t.topic: t.bytes_in_total for t in admin.measurements().topics}
            if totals.get("line3.telemetry", 0) >= 256 * 16 * 1024 and totals.get("line3.alarms", 0) > 0:
                break
            assert time.monotonic() < deadline, totals
            time.sleep(0.2)

        live = ms("config", "check", str(site), "--admin", app.admin_url)
        assert live.returncode == 1, live.stdout + live.stderr  # an error fails the check
        out = live.stdout
        assert f"rates: measured live by {app.admin_url} over the " in out and "since it started (window 1h)" in out
        assert "2 topic(s) with traffic" in out
        line = next(x for x in out.splitlines() if x.strip().startswith("error") and "line3.telemetry" in x)
        assert "at the measured" in line and "a 1h outage needs" in line and "but retention_bytes is 1.0 MiB" in line
        alarms = next(x for x in out.splitlines() if "line3.alarms" in x and "outage needs" in x)
        assert alarms.strip().startswith("info")  # 100 GiB holds an hour of alarms
        assert "not measured yet" not in out

        doc = json.loads(ms("config", "check", str(site), "--admin", app.admin_url, "--json").stdout)
        assert doc["ok"] is False and doc["rates"]["measured"] is True and doc["rates"]["covered_s"] > 0
        assert {(f["stream"], f["rule"], f["severity"]) for f in doc["findings"]} >= {
            ("line3.telemetry", "outage-rate", "error"), ("line3.alarms", "outage-rate", "info")}
    finally:
        app.kill()


def test_config_check_says_when_the_appliance_cannot_be_reached(tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    url = f"http://127.0.0.1:{free_port()}"
    r = ms("config", "check", str(site), "--admin", url)
    assert r.returncode == 2
    assert "millstream: config check: cannot reach" in r.stderr and "Traceback" not in r.stderr
