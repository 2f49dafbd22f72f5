"""kcat (librdkafka CLI) produces with each codec and reads everything back."""

from __future__ import annotations

import subprocess

import pytest

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_and_consume(appliance, codec):
    topic = f"kcat-{codec}"
    lines = [f"sensor-{i % 3}:reading {i} {codec}" for i in range(100)]
    subprocess.run(["kcat", "-b", appliance.bootstrap, "-P", "-t", topic, "-K:", "-z", codec,
                    "-X", "topic.request.required.acks=-1"],
                   input="\n".join(lines) + "\n", text=True, check=True, timeout=30)
    out = subprocess.run(["kcat", "-b", appliance.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                          "-f", "%k:%s\\n"], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.splitlines() == lines


def test_kcat_metadata_lists_the_broker(appliance):
    subprocess.run(["kcat", "-b", appliance.bootstrap, "-P", "-t", "meta-check"], input="x\n", text=True,
                   check=True, timeout=30)
    out = subprocess.run(["kcat", "-b", appliance.bootstrap, "-L", "-t", "meta-check"], capture_output=True,
                         text=True, check=True, timeout=30)
    assert "1 brokers:" in out.stdout
    assert f"127.0.0.1:{appliance.kafka_port}" in out.stdout
    assert 'topic "meta-check" with 1 partitions' in out.stdout


def test_kcat_balanced_consumer_group(appliance):
    """Two `kcat -G` members split a 3-partition topic; everything is consumed once between them."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": appliance.bootstrap})
    admin.create_topics([NewTopic("kcat-group", 3, 1)])["kcat-group"].result(10)
    lines = [f"k{i % 11}:v{i}" for i in range(300)]
    subprocess.run(["kcat", "-b", appliance.bootstrap, "-P", "-t", "kcat-group", "-K:"],
                   input="\n".join(lines) + "\n", text=True, check=True, timeout=30)
    cmd = ["kcat", "-b", appliance.bootstrap, "-G", "kcat-members", "-o", "beginning", "-f", "%p %o %s\\n",
           "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "kcat-group"]
    members = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    try:
        import time
        time.sleep(8)
    finally:
        for m in members:
            m.terminate()
    outputs = [m.communicate(timeout=20)[0].split("\n") for m in members]
    records = [line.split(" ") for out in outputs for line in out if line]
    assert sorted(r[2] for r in records) == sorted(line.split(":")[1] for line in lines)
    assert len({(r[0], r[1]) for r in records}) == 300
    assert all(out and any(out) for out in outputs), "both members should have received partitions"
