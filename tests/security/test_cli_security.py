"""`millstream pki ...` and `millstream rules ...` as an operator runs them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "site-configs" / "rules-plant.toml"


def ms(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(REPO)}
    e.pop("MILLSTREAM_CA_PASSPHRASE", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, env=e,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_pki_init_issue_revoke_list(tmp_path: Path):
    dd = str(tmp_path / "var")
    r = ms("pki", "init", "--data-dir", dd, "--site", "acme")
    assert r.returncode == 0, r.stderr
    assert "site CA created" in r.stdout
    r = ms("pki", "issue", "--data-dir", dd, "--zone", "cell-line3", "--id", "press-7", "--days", "30",
           "--out", str(tmp_path / "press-7"))
    assert r.returncode == 0, r.stderr
    key = tmp_path / "press-7" / "press-7.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    serial = r.stdout.split("serial ")[1].split()[0]
    r = ms("pki", "issue", "--data-dir", dd, "--zone", "appliance", "--id", "gw", "--server", "--dns", "gw.local",
           "--ip", "10.0.0.1")
    assert r.returncode == 0, r.stderr
    r = ms("pki", "list", "--data-dir", dd)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SERIAL", "ZONE", "ID", "KIND", "NOT", "AFTER", "STATUS"]
    row = next(ln for ln in lines if ln.startswith(serial)).split()
    assert row[1:4] == ["cell-line3", "press-7", "client"] and row[-1] == "valid"
    assert "warning: certificate cell-line3/press-7 expires" in r.stderr  # 30 days is within the window
    r = ms("pki", "revoke", "--data-dir", dd, serial, "--reason", "key_compromise")
    assert r.returncode == 0, r.stderr
    assert f"revoked {serial}" in r.stdout
    listed = json.loads(ms("pki", "list", "--data-dir", dd, "--json").stdout)
    assert {x["id"]: x["status"] for x in listed} == {"press-7": "revoked", "gw": "valid"}
    r = ms("pki", "revoke", "--data-dir", dd, serial)
    assert r.returncode == 1 and "already revoked" in r.stderr


def test_pki_errors_are_one_line_without_traceback(tmp_path: Path):
    r = ms("pki", "issue", "--data-dir", str(tmp_path), "--zone", "cell", "--id", "x")
    assert r.returncode == 1
    assert r.stderr.strip().startswith("millstream: pki: no site CA") and "Traceback" not in r.stderr
    r = ms("pki", "revoke", "--data-dir", str(tmp_path))
    assert r.returncode == 2


def test_pki_encrypted_ca_with_env_passphrase(tmp_path: Path):
    dd = str(tmp_path)
    env = {"MILLSTREAM_CA_PASSPHRASE": "s3cret"}
    assert ms("pki", "init", "--data-dir", dd, "--encrypt", env=env).returncode == 0
    assert b"ENCRYPTED" in (tmp_path / "pki" / "ca.key").read_bytes()
    r = ms("pki", "issue", "--data-dir", dd, "--zone", "cell", "--id", "x")  # no passphrase, no terminal
    assert r.returncode == 1 and "MILLSTREAM_CA_PASSPHRASE" in r.stderr
    assert ms("pki", "issue", "--data-dir", dd, "--zone", "cell", "--id", "x", env=env).returncode == 0


def test_rules_explain_allow_and_deny():
    common = ["rules", "explain", "--rules", str(EXAMPLE), "--zone", "cell-line3", "--id", "press-7",
              "--listener", "mqtt-cell", "--op"]
    r = ms(*common, "publish", "uns/acme/plant1/line3/press-7/temp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ALLOW by line3-telemetry")
    r = ms(*common, "publish", "uns/acme/plant1/line3/press-8/temp")
    assert r.returncode == 1
    assert r.stdout.startswith("DENY by default deny")
    assert "uns/acme/plant1/line3/press-7/#" in r.stdout  # shows what press-7 may use instead
    r = ms(*common, "subscribe", "uns/acme/#", "--json")
    out = json.loads(r.stdout)
    assert out["allowed"] is False and out["rule"] is None and out["trace"]


def test_rules_check_reports_file_line_reason(tmp_path: Path):
    assert ms("rules", "check", str(EXAMPLE)).returncode == 0
    bad = tmp_path / "rules.toml"
    bad.write_text('[zones.cell]\n[[conduits]]\nname = "c"\nfrom = "cell"\nto = "m"\nallow = ["publsh"]\n')
    r = ms("rules", "check", "--data-dir", str(tmp_path))
    assert r.returncode == 2
    assert f"{bad}:6: conduit 'c', key 'allow': unknown operation 'publsh'" in r.stderr
