"""`millstream install-service` and the shipped systemd units."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from appliance.cli import main
from appliance.cli_service import UnitSpec, render_unit
from tests.packaging.pyz_helpers import ROOT

SYSTEMD = ROOT / "packaging" / "systemd"


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


def test_writes_the_unit_with_the_given_paths(tmp_path, capsys):
    cfg = tmp_path / "plant.toml"
    cfg.write_text('[node]\nshutdown_grace = "25s"\n[log]\nfile = "/var/log/millstream/plant.log"\n')
    rc = main(["install-service", "--pyz", "/srv/ms/millstream.pyz", "--python", "/usr/bin/python3.12",
               "--data-dir", "/srv/ms/data", "--config", str(cfg), "--user", "factory",
               "--unit-dir", str(tmp_path / "units")])
    assert rc == 0
    unit = (tmp_path / "units" / "millstream.service").read_text()
    keys = unit_keys(unit)
    assert keys["ExecStart"] == [f"/usr/bin/python3.12 /srv/ms/millstream.pyz run --role plant "
                                 f"--data-dir /srv/ms/data --config {cfg}"]
    assert keys["User"] == ["factory"] and keys["Group"] == ["factory"]
    assert set(keys["ReadWritePaths"]) == {"/srv/ms/data", "/var/log/millstream"}
    assert "StateDirectory" not in keys  # a custom data dir is the operator's to create
    assert keys["TimeoutStopSec"] == ["45s"]  # above the 25 s drain deadline
    for k, v in {"ProtectSystem": "strict", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                 "Restart": "on-failure", "LimitNOFILE": "65536", "KillSignal": "SIGTERM",
                 "Environment": "MILLSTREAM_CACHE=/var/cache/millstream"}.items():
        assert v in keys[k], (k, keys.get(k))
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'units' / 'millstream.service'}" in out
    assert "install -d -o factory -g factory -m 0750 /srv/ms/data" in out
    assert "systemctl daemon-reload && systemctl enable --now millstream.service" in out


def test_cloud_role_gets_its_own_unit_and_state_dir(capsys):
    assert main(["install-service", "--role", "cloud", "--pyz", "/opt/m.pyz", "--dry-run"]) == 0
    keys = unit_keys(capsys.readouterr().out)
    assert keys["ExecStart"] == [f"{sys.executable} /opt/m.pyz run --role cloud --data-dir /var/lib/millstream-cloud"]
    assert keys["StateDirectory"] == ["millstream-cloud"] and keys["CacheDirectory"] == ["millstream"]
    assert keys["TimeoutStopSec"] == ["30s"]


def test_without_a_pyz_runs_the_installed_package(capsys, monkeypatch):
    monkeypatch.delenv("MILLSTREAM_PYZ", raising=False)
    assert main(["install-service", "--python", "/usr/bin/python3", "--dry-run"]) == 0
    assert "ExecStart=/usr/bin/python3 -m appliance run --role plant" in capsys.readouterr().out


def test_paths_are_quoted_for_systemd(capsys):
    assert main(["install-service", "--pyz", "/opt/my apps/m%1.pyz", "--python", "/usr/bin/python3",
                 "--data-dir", "/data/$x", "--dry-run"]) == 0
    keys = unit_keys(capsys.readouterr().out)
    assert keys["ExecStart"] == ["/usr/bin/python3 '/opt/my apps/m%%1.pyz' run --role plant --data-dir '/data/$$x'"]


def test_broken_config_is_refused_before_writing(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[kafka]\nlistn = 1\n")
    assert main(["install-service", "--config", str(cfg), "--unit-dir", str(tmp_path / "u")]) == 2
    assert "kafka.listn" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()


def test_unwritable_unit_dir_says_so(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["install-service", "--unit-dir", str(blocker / "units")]) == 1
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("role", ["plant", "cloud"])
def test_shipped_units_are_what_install_service_writes(role):
    spec = UnitSpec(role=role, data_dir=f"/var/lib/{'millstream' if role == 'plant' else 'millstream-cloud'}",
                    config=f"/etc/millstream/{role}.toml")
    shipped = (SYSTEMD / spec.unit_name).read_text()
    assert shipped == render_unit(spec), "run: python packaging/systemd/render.py"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", ["millstream.service", "millstream-cloud.service"])
def test_systemd_accepts_the_units(unit, tmp_path):
    # verify needs ExecStart's program to exist: point it at this interpreter
    text = (SYSTEMD / unit).read_text().replace("ExecStart=/usr/bin/python3 ", f"ExecStart={sys.executable} ")
    (tmp_path / unit).write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert res.returncode == 0, res.stderr
    assert unit not in res.stderr, res.stderr  # warnings name the unit file (unknown key, bad value)
