"""Every example in site-configs/ loads, validates and passes `millstream config check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
# rules-*.toml are rules files, validated by their own tests
SITE_CONFIGS = sorted(p for p in (ROOT / "site-configs").glob("*.toml") if not p.name.startswith("rules-"))


def test_the_examples_are_there():
    names = {p.name for p in SITE_CONFIGS}
    assert {"plant-single-line.toml", "cloud-minio.toml"} <= names


@pytest.mark.parametrize("path", SITE_CONFIGS, ids=[p.name for p in SITE_CONFIGS])
def test_site_config_loads(path):
    settings = load_settings(path)
    assert settings.source == str(path)
    for role in ("plant", "cloud"):
        if path.name.startswith(role):
            assert settings.node.role == role, "the file name says which role it is for"
    assert settings.node.data_dir.is_absolute(), "examples are for installed services: absolute data_dir"


@pytest.mark.parametrize("path", SITE_CONFIGS, ids=[p.name for p in SITE_CONFIGS])
def test_config_check_accepts_it(path):
    res = subprocess.run([sys.executable, "-m", "appliance", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{path}: OK\n")
    assert "[node]" in res.stdout and "[kafka]" in res.stdout
