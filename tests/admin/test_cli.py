"""`millstream status|topics|groups` as a script would run them, against a real appliance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient as KafkaAdmin

from tests.harness import REPO, free_port


def millstream(app_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MILLSTREAM_ADMIN", None)
    return subprocess.run([sys.executable, "-m", "appliance", *args, "--admin", app_url],
                          capture_output=True, text=True, timeout=30, env=env, cwd=REPO)


def test_topic_lifecycle_from_the_command_line(appliance):
    url = appliance.admin_url
    r = millstream(url, "topics", "create", "cli.orders", "-p", "2", "--retention-ms", "86400000",
                   "-c", "cleanup.policy=compact")
    assert r.returncode == 0, r.stderr
    assert "created topic cli.orders with 2 partition(s)" in r.stdout
    kadmin = KafkaAdmin({"bootstrap.servers": appliance.bootstrap})
    assert len(kadmin.list_topics(timeout=10).topics["cli.orders"].partitions) == 2

    p = Producer({"bootstrap.servers": appliance.bootstrap})
    for i in range(3):
        p.produce("cli.orders", b"v%d" % i, key=b"k%d" % i, partition=1)  # a compacted topic needs keys
    assert p.flush(15) == 0

    r = millstream(url, "topics", "list")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split() == ["TOPIC", "PARTITIONS", "RECORDS", "SIZE", "RETENTION", "CLEANUP"]
    assert row.split()[:3] == ["cli.orders", "2", "3"] and row.split()[-2:] == ["1d", "compact"]
    assert header.index("PARTITIONS") + len("PARTITIONS") == row.index("2") + 1  # numbers right-aligned

    r = millstream(url, "topics", "describe", "cli.orders")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[4].split()[:4] == ["1", "0", "3", "3"]  # partition 1: log start 0, high watermark 3
    assert any(line.split()[:3] == ["retention.ms", "86400000", "topic"] for line in lines)

    r = millstream(url, "topics", "alter", "cli.orders", "--retention-ms", "3600000", "-p", "3")
    assert r.returncode == 0, r.stderr
    r = millstream(url, "topics", "describe", "cli.orders", "--json")
    t = json.loads(r.stdout)
    assert t["configs"]["retention.ms"] == "3600000" and len(t["partitions"]) == 3

    r = millstream(url, "topics", "delete", "cli.orders")
    assert r.returncode == 0 and "deleted topic cli.orders" in r.stdout
    assert json.loads(millstream(url, "topics", "--json").stdout) == []


def test_status_and_groups_commands(appliance):
    r = millstream(appliance.admin_url, "status")
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert fields["role"] == "plant" and fields["health"] == "ok"
    st = json.loads(millstream(appliance.admin_url, "status", "--json").stdout)
    assert st["role"] == "plant" and st["node_id"] == 1

    r = millstream(appliance.admin_url, "groups")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["GROUP", "STATE", "MEMBERS", "GENERATION", "PARTITIONS", "LAG"]
    assert json.loads(millstream(appliance.admin_url, "groups", "list", "--json").stdout) == []


def test_errors_exit_1_with_a_message_and_no_traceback(appliance):
    url = appliance.admin_url
    assert millstream(url, "topics", "create", "dup").returncode == 0
    r = millstream(url, "topics", "create", "dup")
    assert r.returncode == 1 and r.stderr.strip() == "millstream: topic 'dup' already exists"
    r = millstream(url, "topics", "describe", "missing")
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = millstream(url, "topics", "alter", "dup", "-c", "retention.ms=soon")
    assert r.returncode == 1 and "retention.ms" in r.stderr and "Traceback" not in r.stderr
    r = millstream(url, "groups", "describe", "nobody")
    assert r.returncode == 1 and "does not exist" in r.stderr

    r = millstream(f"http://127.0.0.1:{free_port()}", "status")
    assert r.returncode == 1 and "cannot reach the admin API" in r.stderr and "Traceback" not in r.stderr
