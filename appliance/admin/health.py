"""Current warnings, computed from live state each time the status is asked for (pure).

`alerts(...)` takes plain figures (storage status, certificate inventory, uplink status, ...) and
the time, and returns what an operator should act on, most urgent first. Nothing is remembered:
a warning disappears the moment its cause does. The admin status shows them (`warnings` as text,
`alerts` with kind and severity), `millstream status` prints them, the console's Overview shows
them, and `/metrics` counts them per kind (`millstream_warnings{kind=...}`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from appliance.admin.models import WARNING_KINDS, Alert, StorageInfo, human_bytes

DISK_BUDGET_WARN = 0.8  # share of the WAL's disk budget that earns a warning
DISK_BUDGET_CRITICAL = 0.95  # close to back-pressure: producers are refused at 100%
DAY = 86400.0


@dataclass(frozen=True)
class CertFacts:
    """What the warnings need of one inventory entry."""

    serial: str
    zone: str
    id: str
    kind: str
    not_after: str  # ISO 8601 UTC, "2026-11-25T21:03:35Z"
    revoked: bool


@dataclass(frozen=True)
class PkiFacts:
    """The CA or the CRL expiring (from the security service's periodic check)."""

    what: str  # "ca" or "crl"
    subject: str
    not_after: str
    expired: bool


@dataclass(frozen=True)
class Facts:
    now: float  # epoch seconds
    storage: StorageInfo
    certificates: Sequence[CertFacts] = ()
    expiry_window_s: float = 30 * DAY
    pki: Sequence[PkiFacts] = ()
    uplink: Mapping[str, Any] | None = None  # the uplink's status() dict; None: no uplink here
    draining: bool = False
    rules_reload_error: str | None = None


def _epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _days(seconds: float) -> str:
    d = seconds / DAY
    if d >= 1:
        return f"{d:.0f} day{'s' if round(d) != 1 else ''}"
    return f"{seconds / 3600:.0f} h" if seconds >= 3600 else f"{max(seconds, 0) / 60:.0f} min"


def certificate_alerts(certs: Iterable[CertFacts], now: float, window_s: float) -> list[Alert]:
    """Per identity (zone, id, kind) only its newest unrevoked certificate counts: a renewed one
    supersedes the old, and a revoked one is an operator's decision, not a surprise."""
    newest: dict[tuple[str, str, str], tuple[float, CertFacts]] = {}
    for c in certs:
        if c.revoked:
            continue
        try:
            t = _epoch(c.not_after)
        except ValueError:
            continue
        key = (c.zone, c.id, c.kind)
        if key not in newest or t > newest[key][0]:
            newest[key] = (t, c)
    out = []
    for t, c in sorted(newest.values(), key=lambda v: (v[0], v[1].zone, v[1].id)):
        who = f"{c.zone}/{c.id}"
        if t <= now:
            out.append(Alert("certificate_expired", "critical",
                             f"certificate {who} expired {c.not_after} (serial {c.serial}): its handshakes fail; "
                             "issue a new one", who))
        elif t - now <= window_s:
            out.append(Alert("certificate_expiring", "warning",
                             f"certificate {who} expires in {_days(t - now)}, {c.not_after} (serial {c.serial})", who))
    return out


def storage_alerts(st: StorageInfo) -> list[Alert]:
    out = []
    store_error = st.extra.get("store_error")
    url = str(st.extra.get("object_store") or "object store")
    if st.extra.get("fenced"):
        out.append(Alert("object_store", "critical",
                         f"another node took over {url}: this one no longer writes ({st.last_error})", url))
    elif store_error:
        since = float(st.extra.get("store_error_s") or 0.0)
        out.append(Alert("object_store", "critical",
                         f"object store unreachable for {since:.0f}s, uploads failing: {store_error}; "
                         f"{human_bytes(st.unuploaded_bytes)} wait in the WAL", url))
    corrupt = int(st.extra.get("corrupt_objects") or 0)
    if corrupt:
        out.append(Alert("object_store", "critical",
                         f"{corrupt} corrupt object(s) in {url}: their ranges cannot be read "
                         f"({st.extra.get('corrupt_reads', 0)} reads refused); last: {st.extra.get('last_corruption')}",
                         url))
    if st.last_error and st.last_error != store_error and not st.extra.get("fenced"):
        out.append(Alert("storage", "critical", f"storage error: {st.last_error}"))
    budget = st.wal_budget_bytes
    if budget and st.wal_bytes >= DISK_BUDGET_WARN * budget:
        share = st.wal_bytes / budget
        out.append(Alert("disk_budget", "critical" if share >= DISK_BUDGET_CRITICAL else "warning",
                         f"WAL uses {100 * share:.0f}% of its disk budget ({human_bytes(st.wal_bytes)} of "
                         f"{human_bytes(budget)}); producers are pushed back at 100%"))
    return out


def uplink_alerts(u: Mapping[str, Any] | None) -> list[Alert]:
    if not u or not u.get("enabled"):
        return []
    backlog = int(u.get("backlog_records") or 0)
    if backlog <= 0 or (u.get("connected") and not u.get("paused")):
        return []
    size = human_bytes(int(u.get("backlog_bytes") or 0))
    target = ", ".join(u.get("bootstrap") or []) or "the cloud"
    if u.get("paused"):
        return [Alert("uplink", "warning", f"uplink paused by an operator: {backlog} records ({size}) wait for {target}",
                      target)]
    why = f": {u['last_error']}" if u.get("last_error") else ""
    return [Alert("uplink", "critical", f"uplink to {target} disconnected with {backlog} records ({size}) "
                                        f"waiting{why}", target)]


def alerts(f: Facts) -> list[Alert]:
    out: list[Alert] = []
    out += storage_alerts(f.storage)
    out += certificate_alerts(f.certificates, f.now, f.expiry_window_s)
    for p in f.pki:
        state = "expired" if p.expired else "expires"
        out.append(Alert("pki", "critical" if p.expired else "warning",
                         f"{'site CA' if p.what == 'ca' else 'CRL'} {state} {p.not_after}"
                         + (": run `millstream pki crl`" if p.what == "crl" else ""), p.subject))
    out += uplink_alerts(f.uplink)
    if f.rules_reload_error:
        out.append(Alert("rules", "warning", f"rules reload rejected (previous rules in force): {f.rules_reload_error}"))
    if f.draining:
        out.append(Alert("draining", "warning", "draining: the appliance is shutting down"))
    rank = {k: i for i, k in enumerate(WARNING_KINDS)}
    return sorted(out, key=lambda a: (a.severity != "critical", rank.get(a.kind, len(rank))))


def counts(found: Iterable[Alert]) -> dict[str, int]:
    """Warnings per kind, every known kind present (0 when clear) so alert rules can match on it."""
    out = dict.fromkeys(WARNING_KINDS, 0)
    for a in found:
        out[a.kind] = out.get(a.kind, 0) + 1
    return out
