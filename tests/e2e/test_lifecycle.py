"""Start-up, graceful drain on SIGTERM/SIGINT, and bad settings refused at start-up."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.harness import REPO


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_and_exits_zero_with_clients_connected(make_appliance, sig):
    app = make_appliance().start()
    p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce("drain-test", value=f"v{i}".encode())
    assert p.flush(15) == 0
    # A consumer sitting in a long poll, and a producer sending, while the signal arrives.
    c = Consumer({"bootstrap.servers": app.bootstrap, "group.id": "g", "fetch.wait.max.ms": 5000})
    c.assign([TopicPartition("drain-test", 0, 100)])
    c.poll(0.5)
    stop = threading.Event()

    def keep_producing():
        while not stop.is_set():
            p.produce("drain-test", value=b"late")
            p.poll(0.01)

    t = threading.Thread(target=keep_producing)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    code = app.stop(sig, timeout=20)
    elapsed = time.monotonic() - started
    stop.set()
    t.join()
    c.close()
    assert code == 0
    assert elapsed < 8, f"drain took {elapsed:.1f}s"
    log = app.log_text()
    assert "event=draining" in log and "event=stopped" in log
    # Everything acknowledged before the signal is there after a restart.
    app.start()
    c = Consumer({"bootstrap.servers": app.bootstrap, "group.id": "verify", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("drain-test", 0, 0)])
    got = []
    deadline = time.monotonic() + 15
    while len(got) < 100 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got[:100] == [f"v{i}".encode() for i in range(100)]


def test_bad_config_key_fails_start_naming_file_and_key(tmp_path):
    cfg = tmp_path / "plant.toml"
    cfg.write_text("[kafka]\nlisten = \"127.0.0.1:0\"\nauto_create_topic = true\n")
    out = subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(cfg), "--data-dir",
                          str(tmp_path / "d")], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.returncode == 2
    assert str(cfg) in out.stderr and "kafka.auto_create_topic" in out.stderr and "unknown setting" in out.stderr


def test_bad_flag_value_fails_start(tmp_path):
    out = subprocess.run([sys.executable, "-m", "appliance", "run", "--kafka-listen", "nonsense",
                          "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.returncode == 2
    assert "kafka.listen" in out.stderr and "HOST:PORT" in out.stderr


def test_version_command_both_entry_points():
    for cmd in ([sys.executable, "-m", "appliance", "version"],):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO)
        assert out.returncode == 0
        assert out.stdout.startswith("millstream ")


def test_port_in_use_is_one_clear_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "appliance", "run", "--data-dir", str(tmp_path / "d"),
                              "--kafka-listen", f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0"],
                             capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.returncode == 1
    assert f"millstream: cannot start: kafka listener cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
