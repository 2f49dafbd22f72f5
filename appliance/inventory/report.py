"""Findings out to people: log lines at start-up, text lines for `millstream config check`.

Start-up hook for the runtime (one call after settings load, before listeners start):
    from appliance.inventory.report import log_findings
    log_findings(check_settings(settings))          # nothing measured yet at start-up; the admin API
                                                    # (GET /api/v1/inventory) checks against live rates
"""

from __future__ import annotations

from collections.abc import Sequence

from appliance.inventory.checks import Finding, summarize
from appliance.logs import Logger, get_logger


def log_findings(findings: Sequence[Finding], log: Logger | None = None) -> None:
    """One key=value line per finding (a handful per site, never per record), then a summary."""
    log = log or get_logger("inventory")
    for f in findings:
        emit = {"error": log.error, "warning": log.warning}.get(f.severity, log.info)
        emit("inventory_finding", severity=f.severity, stream=f.stream, rule=f.rule, message=f.message)
    log.info("inventory_checked", **summarize(findings))


def format_findings(findings: Sequence[Finding]) -> list[str]:
    """Aligned text lines, errors first (the order check_inventory returns)."""
    if not findings:
        return ["inventory: no findings"]
    width = max(len(f.stream) for f in findings)
    counts = summarize(findings)
    lines = [f"inventory: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)"]
    lines += [f"  {f.severity:<7} {f.stream:<{width}}  {f.message}" for f in findings]
    return lines
