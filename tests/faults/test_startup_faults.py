"""Start-up faults end in one clear log line and exit status 1, never a traceback."""

from __future__ import annotations

import socket

import pytest


def test_kafka_port_in_use_is_reported_clearly(make_appliance):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = make_appliance(kafka_port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="exited with 1"):
            app.start()
    text = app.log_text()
    assert "startup_failed" in text and "Address already in use" in text
    assert "Traceback" not in text
