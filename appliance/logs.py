"""Structured logs: one key=value line per event, to stderr or a rotating file.

    log = get_logger("kafka")
    log.info("connection_closed", peer="127.0.0.1:5123", reason="bad frame length")

renders as `ts=2026-11-25T18:00:00.123Z level=info area=kafka event=connection_closed peer=... reason="bad frame length"`.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from collections import deque
from typing import Any

_ROOT = "millstream"


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"area={record.name.removeprefix(_ROOT + '.') or 'main'}",
            f"event={_quote(record.getMessage())}",
        ]
        fields = getattr(record, "kv", None)
        if fields:
            parts.extend(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            parts.append("exc=" + _quote(self.formatException(record.exc_info)))
        return " ".join(parts)


class Logger:
    """A thin facade that takes fields as keyword arguments."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: Any, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, extra={"kv": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, None, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, None, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, None, fields)

    def error(self, event: str, exc_info: Any = None, **fields: Any) -> None:
        self._log(logging.ERROR, event, exc_info, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)

    def is_debug(self) -> bool:
        return self._logger.isEnabledFor(logging.DEBUG)


def get_logger(area: str) -> Logger:
    return Logger(logging.getLogger(f"{_ROOT}.{area}"))


def configure(level: str = "info", file: str | None = None, max_bytes: int = 20 << 20, backups: int = 5) -> None:
    """Send Millstream's logs to stderr, or to a rotating file (when the TUI owns the terminal)."""
    root = logging.getLogger(_ROOT)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    handler: logging.Handler
    if file:
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


class LogRing(logging.Handler):
    """The last `capacity` log lines in memory, numbered, for the admin API's /logs (and so the
    TUI's Logs tab). Appending is O(1); readers ask for lines after the last number they saw."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__()
        self.setFormatter(KeyValueFormatter())
        self._lines: deque[tuple[int, float, str, str]] = deque(maxlen=capacity)
        self._seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a bad log call must not break the caller
            self.handleError(record)
            return
        self._seq += 1
        self._lines.append((self._seq, record.created, record.levelname.lower(), line))

    def lines(self, after: int = 0, limit: int = 500) -> tuple[list[tuple[int, float, str, str]], int]:
        """(lines numbered above `after`, at most the last `limit` of them; the newest number)."""
        with self.lock:  # emit() holds it too; the TUI's worker threads log as well
            out = [entry for entry in self._lines if entry[0] > after]
        return out[-limit:] if limit > 0 else [], self._seq


def attach_ring(capacity: int = 2000) -> LogRing:
    """Keep recent lines in memory besides wherever `configure` sends them."""
    ring = LogRing(capacity)
    logging.getLogger(_ROOT).addHandler(ring)
    return ring


def detach_ring(ring: LogRing) -> None:
    logging.getLogger(_ROOT).removeHandler(ring)
