"""The Logs tab: the appliance's recent log lines (kept in memory by the appliance), followed."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, Static

from appliance.admin.models import LogLine

LEVEL_LABELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR", "critical": "CRIT"}
LEVEL_STYLES = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "critical": "bold red"}
_HEAD = re.compile(r"ts=\S*T(\d\d:\d\d:\d\d)\.\d+Z level=\w+ area=(\S+) event=")


def render_line(line: LogLine) -> Text:
    """`12:00:01 WARN  kafka connection_rejected peer=...`: the date and the key names of the
    fixed fields dropped, so an 80-column screen shows what happened."""
    m = _HEAD.match(line.line)
    rest = line.line[m.end():] if m else line.line
    head = f"{m.group(1)} " if m else ""
    area = f"{m.group(2)} " if m else ""
    style = LEVEL_STYLES.get(line.level, "")
    return Text.assemble(head, (f"{LEVEL_LABELS.get(line.level, line.level.upper()):<6}", style or "green"), (area, "cyan"), (rest, style))


class LogsPane(Vertical):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.last_seq = 0
        self.follow = True

    def compose(self) -> ComposeResult:
        yield Static("", id="logs-state")
        yield RichLog(id="log-lines", max_lines=2000, wrap=False, markup=False, auto_scroll=True)

    def on_mount(self) -> None:
        self._show_state()

    def add(self, lines: Sequence[LogLine], last_seq: int) -> None:
        log = self.query_one(RichLog)
        if last_seq < self.last_seq:  # the appliance restarted: its numbering began again
            log.clear()
            self.last_seq = 0  # the next poll asks for everything it keeps
            return
        for line in lines:
            log.write(render_line(line), scroll_end=self.follow)
        self.last_seq = last_seq
        self._show_state()

    def toggle_follow(self) -> bool:
        self.follow = not self.follow
        log = self.query_one(RichLog)
        log.auto_scroll = self.follow
        if self.follow:
            log.scroll_end(animate=False)
        self._show_state()
        return self.follow

    def _show_state(self) -> None:
        state = "following (f: stop)" if self.follow else "paused (f: follow)"
        self.query_one("#logs-state", Static).update(Text(f"recent log lines, newest last - {state}"))
