"""A real appliance process with segmented listeners, certificates from `pki issue`, and rules.

Listeners (all on loopback, port 0):
    kafka-plant  Kafka  mTLS        certificates decide the zone
    kafka-local  Kafka  plaintext   zone "local"
    mqtt-cell    MQTT   mTLS
    admin        admin  plaintext   zone "ops" (loopback)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from appliance.security.pki import IssuedCert, Pki
from tests.harness import REPO, ApplianceProcess

RULES = """
[zones.plant-apps]
[zones.cell-line3]
[zones.ops]
[zones.local]

[[conduits]]
name = "apps-slow"
from = "plant-apps"
to = "kafka-plant"
allow = ["produce", "create_topic"]
topics = { prefix = "apps.slow." }
rate = { msgs_per_s = 50 }

[[conduits]]
name = "apps"
from = "plant-apps"
to = "kafka-plant"
allow = ["produce", "consume", "create_topic"]
topics = { prefix = "apps." }
groups = { prefix = "{id}-" }
rate = { max_payload = "64KiB" }

[[conduits]]
name = "line3-telemetry"
from = "cell-line3"
to = "mqtt-cell"
allow = ["publish"]
topics = ["uns/acme/plant1/line3/{id}/#"]
max_qos = 1

[[conduits]]
name = "line3-commands"
from = "cell-line3"
to = "mqtt-cell"
allow = ["subscribe"]
topics = ["uns/acme/plant1/line3/{id}/cmd/#"]
max_qos = 1

[[conduits]]
name = "ops-admin"
from = "ops"
to = "admin"
allow = ["admin"]

[[conduits]]
name = "local-tools"
from = "local"
to = "kafka-local"
allow = ["produce", "consume", "create_topic"]
topics = "*"
groups = "*"
"""

CONFIG = """
[security]
rules = "{rules}"

[[listeners]]
name = "kafka-plant"
protocol = "kafka"
bind = "127.0.0.1:0"
security = "mtls"
advertised_host = "localhost"

[[listeners]]
name = "kafka-local"
protocol = "kafka"
bind = "127.0.0.1:0"
zone = "local"

[[listeners]]
name = "mqtt-cell"
protocol = "mqtt"
bind = "127.0.0.1:0"
security = "mtls"
zone = "cell-line3"

[[listeners]]
name = "admin"
protocol = "admin"
bind = "127.0.0.1:0"
zone = "ops"

[storage]
fsync = false
"""


def pki_issue(data_dir: Path, zone: str, id: str, *extra: str) -> IssuedCert:
    """`millstream pki issue`, as an operator would run it."""
    res = subprocess.run([sys.executable, "-m", "appliance", "pki", "issue", "--data-dir", str(data_dir),
                          "--zone", zone, "--id", id, *extra], capture_output=True, text=True, timeout=60,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    out = data_dir / "pki" / "out" / f"{zone}.{id}"
    rec = next(r for r in reversed(Pki(data_dir).list()) if r.zone == zone and r.id == id)
    return IssuedCert(rec, out / f"{id}.crt", out / f"{id}.key", out / "ca.crt")


class Segmented(ApplianceProcess):
    """ApplianceProcess that also knows each listener's port (ready.json "listeners")."""

    def __init__(self, data_dir: Path, config: str = CONFIG, rules: str = RULES) -> None:
        super().__init__(data_dir)
        self.rules_path = data_dir.parent / "rules.toml"
        self.rules_path.write_text(rules)
        cfg = data_dir.parent / "segmented.toml"
        cfg.write_text(config.format(rules=self.rules_path))
        self.config = cfg
        self.ports: dict[str, int] = {}

    def start(self, timeout: float = 20.0) -> Segmented:
        super().start(timeout)
        self.ports = json.loads((self.data_dir / "run" / "ready.json").read_text())["listeners"]
        return self

    def addr(self, listener: str) -> str:
        return f"localhost:{self.ports[listener]}"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}{path}", timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['admin']}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_text().splitlines():
                if needle in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged:\n{self.log_text()[-3000:]}")
