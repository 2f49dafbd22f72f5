"""A real S3-speaking HTTP server (moto_server) on a free loopback port, for tests and the bench."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import free_port

ACCESS_KEY = "millstream-test"
SECRET_KEY = "millstream-test-secret"


class MotoServer:
    def __init__(self, *, cert: Path | None = None, key: Path | None = None) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.tls = (cert, key) if cert and key else None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, bucket: str | None = None, prefix: str = "millstream") -> str:
        bucket = bucket or f"b-{uuid.uuid4().hex[:12]}"
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}&region=us-east-1"

    def start(self, timeout: float = 20.0) -> MotoServer:
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe), "-H", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            cmd += ["-c", str(self.tls[0]), "-k", str(self.tls[1])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
            try:
                ctx = ssl._create_unverified_context() if self.tls else None
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1, context=ctx).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @staticmethod
    def credentials_env() -> dict[str, str]:
        return {"MILLSTREAM_S3_ACCESS_KEY": ACCESS_KEY, "MILLSTREAM_S3_SECRET_KEY": SECRET_KEY}


def set_credentials() -> None:
    os.environ.update(MotoServer.credentials_env())


def moto_fixture(scope: str = "function", *, credentials: bool = False) -> Any:
    """A pytest fixture running one moto_server for `scope`; `credentials` also exports the test
    keys into this process's environment (for stores built in-process)."""

    @pytest.fixture(scope=scope)
    def moto() -> Iterator[MotoServer]:
        if credentials:
            set_credentials()
        server = MotoServer().start()
        yield server
        server.stop()

    return moto
