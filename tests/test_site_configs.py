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


def test_zoned_cloud_lets_each_plant_uplink_deliver_only_its_own_topics():
    """cloud-zones.toml + rules-cloud.toml receive plant-zones.toml's uplink: mTLS in zone `uplink`,
    allowed to describe/create/produce what the plant forwards, nothing else."""
    from appliance.security.pki import Identity
    from appliance.security.rules import decide, load_rules

    cloud = load_settings(ROOT / "site-configs" / "cloud-zones.toml")
    plant = load_settings(ROOT / "site-configs" / "plant-zones.toml")
    (listener,) = [x for x in cloud.listeners if x.zone == "uplink"]
    assert listener.protocol == "kafka" and listener.security == "mtls"
    up = plant.uplink
    assert up.enabled and up.security == "mtls" and up.cert_file and up.key_file and up.ca_file
    assert up.bootstrap == (f"{listener.advertised_host}:{listener.bind.port}",)
    rules = load_rules(ROOT / "site-configs" / "rules-cloud.toml")
    me = Identity("uplink", up.site)  # the certificate's id is the plant's site id
    forwarded = [r.cloud.format(site=up.site, topic="uns.acme.plant1.alarms.press-7") for r in up.forward]
    for topic in forwarded:
        for op in ("produce", "create_topic", "describe"):
            assert decide(rules, me, None, listener.name, op, topic).allowed, (op, topic)
        assert not decide(rules, me, None, listener.name, "consume", topic).allowed
        assert not decide(rules, me, None, listener.name, "delete_topic", topic).allowed
    other = Identity("uplink", "plant2")
    assert not decide(rules, other, None, listener.name, "produce", forwarded[0]).allowed
    assert not decide(rules, me, None, listener.name, "produce", "plant2.uns.acme.plant2.x").allowed
    assert not decide(rules, me, None, "kafka-it", "produce", forwarded[0]).allowed
    it = Identity("it", "bi-1")
    assert decide(rules, it, None, "kafka-it", "consume", forwarded[0]).allowed
    assert not decide(rules, it, None, "kafka-it", "produce", forwarded[0]).allowed
