"""Start real appliance processes for end-to-end tests (subprocess, loopback ports, temp data dir)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApplianceProcess:
    """One `python -m appliance run` process. Ports stay fixed across restarts so clients reconnect."""

    def __init__(self, data_dir: Path, *, role: str = "plant", config: Path | None = None,
                 extra_args: list[str] | None = None, kafka_port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.role = role
        self.config = config
        self.extra_args = list(extra_args or [])
        # Port 0 on the first start (no race with other processes); restarts reuse the bound ports.
        self.kafka_port = kafka_port or 0
        self.admin_port = 0
        self.mqtt_port = 0
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-appliance.log"
        self._log = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "appliance", "run", "--role", self.role, "--data-dir", str(self.data_dir),
               "--kafka-listen", f"127.0.0.1:{self.kafka_port}", "--admin-listen", f"127.0.0.1:{self.admin_port}",
               "--mqtt-listen", f"127.0.0.1:{self.mqtt_port}",
               "--advertised-host", "127.0.0.1"]
        if self.config:
            cmd += ["--config", str(self.config)]
        return cmd + self.extra_args

    def start(self, timeout: float = 20.0) -> ApplianceProcess:
        ready = self.data_dir / "run" / "ready.json"
        if ready.exists():
            ready.unlink()
        self._log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO), **(self.env or {})}
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"appliance exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            if ready.exists():
                info = json.loads(ready.read_text())
                if info.get("pid") == self.proc.pid:
                    self.kafka_port = info["kafka_port"]
                    self.admin_port = info["admin_port"]
                    self.mqtt_port = info.get("mqtt_port") or 0
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"appliance not ready within {timeout}s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._close_log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> ApplianceProcess:
        self.kill()
        return self.start()
