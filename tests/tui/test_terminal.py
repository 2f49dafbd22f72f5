"""`millstream tui` in a real pseudo-terminal: it starts, draws, logs to a file, and leaves the
terminal as it found it on `q` and on SIGTERM/SIGHUP."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.harness import REPO

ALT_SCREEN_ON = b"\x1b[?1049h"
ALT_SCREEN_OFF = b"\x1b[?1049l"


class Terminal:
    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        os.set_blocking(self.master, False)
        env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, cwd=REPO, start_new_session=True)
        os.close(slave)
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen; output tail: {self.output[-2000:]!r}")
            if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                raise AssertionError(f"exited with {self.proc.returncode}; output: {self.output[-2000:]!r}")
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # EIO once the child is gone
                    pass

    def wait(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    break
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


@pytest.mark.parametrize("how", ["q", signal.SIGTERM, signal.SIGHUP])
def test_console_starts_logs_to_a_file_and_restores_the_terminal(appliance, tmp_path, how):
    log_file = tmp_path / "tui.log"
    term = Terminal(["tui", "--connect", appliance.admin_url, "--log-file", str(log_file)])
    try:
        term.read_until(ALT_SCREEN_ON)
        term.read_until(b"Overview")
        if how == "q":
            os.write(term.master, b"q")
        else:
            time.sleep(0.5)  # let the console install its signal handlers after mounting
            term.proc.send_signal(how)
        assert term.wait() == 0
        assert ALT_SCREEN_OFF in term.output.split(ALT_SCREEN_ON)[-1]
        assert b"Traceback" not in term.output
        log = log_file.read_text()
        assert f"tui_start url={appliance.admin_url}" in log and "tui_stop" in log
    finally:
        term.close()
