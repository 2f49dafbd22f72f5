"""Fixtures for ingestion tests: a real Mosquitto broker (Debian's) on a free loopback port."""

from __future__ import annotations

import pytest

from tests.harness import free_port
from tests.ingest.helpers import Mosquitto


@pytest.fixture
def mosquitto(tmp_path):
    m = Mosquitto(tmp_path, free_port()).start()
    yield m
    m.stop()
    m.log.close()
