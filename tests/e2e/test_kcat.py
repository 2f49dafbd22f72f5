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
