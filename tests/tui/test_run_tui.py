"""`millstream run --tui`: the appliance and the console in one process, in a real terminal.

tmux plays the operator's terminal (start, see the Overview, press q); a pty covers SIGTERM and
SIGHUP. In every case the appliance drains and stops, the process exits 0, the terminal leaves
the alternate screen, and the logs went to a file instead of the screen.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import REPO
from tests.tui.test_terminal import ALT_SCREEN_OFF, ALT_SCREEN_ON, Terminal


def run_args(data_dir: Path) -> list[str]:
    return ["run", "--tui", "--data-dir", str(data_dir), "--kafka-listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--no-fsync"]


class Tmux:
    def __init__(self) -> None:
        self.socket = f"millstream-test-{uuid.uuid4().hex[:8]}"  # a private tmux server

    def __call__(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "console")

    def wait_for(self, *texts: str, timeout: float = 20.0) -> str:
        """The screen once it shows all of `texts`: a capture can catch a frame half drawn."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{texts!r} not all on the screen:\n{self.screen()}")

    def kill(self) -> None:
        self("kill-server")


def test_run_tui_in_tmux_starts_shows_the_overview_and_q_stops_it(tmp_path):
    data_dir = tmp_path / "data"
    rc_file = tmp_path / "rc"
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "appliance", *run_args(data_dir)])
    script = f"cd {shlex.quote(str(REPO))} && PYTHONPATH={shlex.quote(str(REPO))} {command}; echo $? > {rc_file}; sleep 60"
    tmux = Tmux()
    try:
        tmux("new-session", "-d", "-s", "console", "-x", "80", "-y", "24", "sh", "-c", script)
        screen = tmux.wait_for("1 Overview")
        # the console reached the in-process admin API
        tmux.wait_for("plant node 1", "kafka 127.0.0.1:", "storage OK")
        assert tmux("display-message", "-p", "-t", "console", "#{alternate_on}").strip() == "1"
        tmux("send-keys", "-t", "console", "q")
        deadline = time.monotonic() + 20
        while not rc_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rc_file.read_text().strip() == "0"
        # the terminal is back: normal screen, cursor shown, the TUI's frame gone
        assert tmux("display-message", "-p", "-t", "console", "#{alternate_on} #{cursor_flag}").split() == ["0", "1"]
        screen = tmux.screen()
        assert "millstream: stopped; logs are in" in screen and "1 Overview" not in screen
        log = (data_dir / "millstream.log").read_text()
        assert "event=ready" in log and "event=console_closed" in log and "event=stopped" in log
        assert not (data_dir / "run" / "ready.json").exists()  # a clean stop
    finally:
        tmux.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_run_tui_signal_restores_the_terminal_and_drains(tmp_path, sig):
    data_dir = tmp_path / "data"
    term = Terminal(run_args(data_dir))
    try:
        term.read_until(ALT_SCREEN_ON)
        term.read_until(b"no warnings")  # the console reached the in-process admin API
        time.sleep(0.3)  # the console's signal handlers are installed on mount
        term.proc.send_signal(sig)
        assert term.wait() == 0
        assert ALT_SCREEN_OFF in term.output.split(ALT_SCREEN_ON)[-1]
        assert b"Traceback" not in term.output
        log = (data_dir / "millstream.log").read_text()
        assert "event=draining" in log and "event=stopped" in log
    finally:
        term.close()


def test_run_tui_start_up_failure_is_one_clear_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    data_dir = tmp_path / "data"
    config = tmp_path / "site.toml"
    config.write_text(f'[admin]\nunix_socket = "{blocker}/admin.sock"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "appliance", *run_args(data_dir), "--config", str(config)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 1
    assert "millstream: cannot start: admin API cannot listen on" in out.stderr
    assert "Traceback" not in out.stderr
