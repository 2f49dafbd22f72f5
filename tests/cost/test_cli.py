"""`millstream cost` and `millstream config check` as an operator runs them."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MEASUREMENTS = REPO / "site-configs" / "plant-measurements.json"
INVENTORY = REPO / "site-configs" / "plant-single-line.toml"


def ms(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_cost_table_side_by_side():
    r = ms("cost", "--measurements", str(MEASUREMENTS))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    header = next(line for line in out.splitlines() if line.startswith("line item"))
    assert "(a) broker-attached" in header and "(b) object storage" in header
    for item in ("brokers", "block storage", "object storage", "PUT: WAL uploads", "cross-zone: replication"):
        assert item in out
    assert "total / month" in out and "assumptions:" in out and "AWS us-east-1" in out


def test_cost_json_with_projections():
    base = json.loads(ms("cost", "--measurements", str(MEASUREMENTS), "--json").stdout)
    r = ms("cost", "--measurements", str(MEASUREMENTS), "--json", "--scale", "4", "--retention", "14d")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["projection"] == {"scale": 4.0, "retention_s": 14 * 86400.0}
    assert doc["baseline_totals"]["object_storage"] == pytest.approx(base["designs"]["object_storage"]["total"])
    assert doc["workload"]["ingress_bytes_per_s"] == pytest.approx(4 * base["workload"]["ingress_bytes_per_s"])
    assert doc["workload"]["retained_bytes"] == pytest.approx(doc["workload"]["ingress_bytes_per_s"] * 14 * 86400)
    for design in doc["designs"].values():
        assert design["total"] == pytest.approx(sum(line["monthly"] for line in design["lines"]))


def test_cost_projection_table_names_the_projection_and_the_baseline():
    r = ms("cost", "--measurements", str(MEASUREMENTS), "--scale", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("projection: x2") and "measured baseline: (a) " in r.stdout


def test_cost_with_a_price_sheet(tmp_path: Path):
    sheet = tmp_path / "prices.toml"
    sheet.write_text('[sheet]\nname = "our contract"\n[object_storage]\ngb_month = 0.01\n')
    r = ms("cost", "--measurements", str(MEASUREMENTS), "--price-sheet", str(sheet), "--json")
    doc = json.loads(r.stdout)
    assert doc["price_sheet"] == "our contract"
    line = next(x for x in doc["designs"]["object_storage"]["lines"] if x["item"] == "object storage")
    assert line["unit_price"] == 0.01


@pytest.mark.parametrize("args, message", [
    ((), "no measurements: pass --measurements FILE or --admin URL"),
    (("--measurements", "/nonexistent.json"), "/nonexistent.json: file not found"),
    (("--measurements", str(MEASUREMENTS), "--price-sheet", "/nonexistent.toml"), "/nonexistent.toml: -: file not found"),
    (("--measurements", str(MEASUREMENTS), "--retention", "a while"), "expected a duration"),
    (("--measurements", str(MEASUREMENTS), "--scale", "0"), "scale factor must be > 0"),
])
def test_cost_errors_are_one_line_exit_2(args, message):
    r = ms("cost", *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_bad_measurement_names_where(tmp_path: Path):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"topics": [{"topic": "a", "bytes_in_per_s": 1}, {"topic": "b", "bytes_in": 1}]}))
    r = ms("cost", "--measurements", str(f))
    assert r.returncode == 2 and "topics[1]: unknown key(s) bytes_in" in r.stderr


def test_print_price_sheet_is_the_shipped_defaults():
    r = ms("cost", "--print-price-sheet")
    assert r.returncode == 0 and "[object_storage]" in r.stdout and "cross_zone_per_gb" in r.stdout


class _Admin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/api/v1/measurements" and self.server.serve_measurements:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(MEASUREMENTS.read_bytes())
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def admin():
    servers = []

    def start(serve_measurements: bool) -> str:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Admin)
        srv.serve_measurements = serve_measurements
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_cost_reads_measurements_from_the_admin_api(admin):
    from_file = json.loads(ms("cost", "--measurements", str(MEASUREMENTS), "--json").stdout)
    r = ms("cost", "--admin", admin(True), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["designs"] == from_file["designs"]


def test_cost_says_when_the_admin_api_has_no_measurements(admin):
    url = admin(False)
    r = ms("cost", "--admin", url)
    assert r.returncode == 2
    assert f"the admin API at {url} does not serve /api/v1/measurements (an older appliance?)" in r.stderr


def test_config_check_prints_streams_and_inventory_findings():
    r = ms("config", "check", str(INVENTORY))
    assert r.returncode == 0, r.stderr
    assert "[inventory]" in r.stdout and r.stdout.count("[[streams]]") == 5
    assert "inventory: 0 error(s), 0 warning(s)" in r.stdout
    assert "not measured yet" in r.stdout


def test_config_check_fails_on_a_placement_error(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[[streams]]\ntopic = "interlock"\nlocal_action = true\nplacement = "cloud"\nforwarded = true\n'
                   'retention = "2d"\n')
    r = ms("config", "check", str(cfg))
    assert r.returncode == 1
    assert "error   interlock  a local action depends on it, but placement = cloud" in r.stdout
    assert "warning interlock  no data owner" in r.stdout


def test_config_check_reports_a_bad_stream_with_its_index(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[[streams]]\ntopic = "a"\n[[streams]]\ntopic = "b"\nplacement = "edge"\n')
    r = ms("config", "check", str(cfg))
    assert r.returncode == 2
    assert f"{cfg}: streams[1].placement: expected one of machine, plant_edge, regional, cloud, lake" in r.stderr
