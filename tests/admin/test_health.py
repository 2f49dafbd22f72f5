"""The warnings computed from live state (appliance/admin/health.py): pure, time passed in."""

from __future__ import annotations

from datetime import datetime, timezone

from appliance.admin.health import DAY, CertFacts, Facts, PkiFacts, alerts, counts
from appliance.admin.models import WARNING_KINDS, StorageInfo

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc).timestamp()


def storage(**kw) -> StorageInfo:
    base = dict(wal_bytes=1 << 20, wal_segments=1, unuploaded_bytes=0, durable_appends=0, fsyncs=0, last_error=None,
                wal_budget_bytes=100 << 20, streams=1, stored_bytes=0, extra={"object_store": "file:///data/objects"})
    return StorageInfo(**{**base, **kw})


def cert(id_: str, not_after: str, *, zone: str = "cell-line3", revoked: bool = False, serial: str = "aa") -> CertFacts:
    return CertFacts(serial, zone, id_, "client", not_after, revoked)


def test_a_healthy_node_has_no_warnings_and_every_kind_counts_zero():
    found = alerts(Facts(now=NOW, storage=storage(), certificates=[cert("p1", "2027-11-25T12:00:00Z")]))
    assert found == []
    assert counts(found) == dict.fromkeys(WARNING_KINDS, 0)


def test_certificates_expiring_and_expired_newest_per_identity_counts():
    certs = [
        cert("press-7", "2026-11-28T12:00:00Z", serial="01"),  # 3 days left
        cert("press-9", "2026-11-20T12:00:00Z", serial="02"),  # expired 5 days ago, not renewed
        cert("press-5", "2026-11-26T00:00:00Z", serial="03"),  # expiring, but renewed below
        cert("press-5", "2027-11-26T00:00:00Z", serial="04"),
        cert("press-3", "2026-11-21T00:00:00Z", serial="05", revoked=True),  # revoked: a decision, not news
        cert("press-1", "2027-01-30T00:00:00Z", serial="06"),  # 66 days: outside the 30-day window
    ]
    found = alerts(Facts(now=NOW, storage=storage(), certificates=certs, expiry_window_s=30 * DAY))
    assert [(a.kind, a.severity, a.subject) for a in found] == [
        ("certificate_expired", "critical", "cell-line3/press-9"),
        ("certificate_expiring", "warning", "cell-line3/press-7"),
    ]
    assert found[1].message == "certificate cell-line3/press-7 expires in 3 days, 2026-11-28T12:00:00Z (serial 01)"
    assert counts(found)["certificate_expiring"] == 1 and counts(found)["certificate_expired"] == 1


def test_object_store_outage_disk_budget_and_fencing():
    st = storage(wal_bytes=85 << 20, unuploaded_bytes=84 << 20, last_error="upload data/1.obj: refused",
                 extra={"object_store": "s3://bucket", "store_error": "upload data/1.obj: refused", "store_error_s": 42.4})
    found = alerts(Facts(now=NOW, storage=st))
    assert [(a.kind, a.severity) for a in found] == [("object_store", "critical"), ("disk_budget", "warning")]
    assert found[0].message == ("object store unreachable for 42s, uploads failing: upload data/1.obj: refused; "
                                "84.0 MiB wait in the WAL")
    assert found[1].message.startswith("WAL uses 85% of its disk budget")
    full = alerts(Facts(now=NOW, storage=storage(wal_bytes=99 << 20)))
    assert [(a.kind, a.severity) for a in full] == [("disk_budget", "critical")]
    fenced = alerts(Facts(now=NOW, storage=storage(last_error="took over", extra={"fenced": True})))
    assert [a.kind for a in fenced] == ["object_store"] and "no longer writes" in fenced[0].message
    other = alerts(Facts(now=NOW, storage=storage(last_error="WAL write failed: ENOSPC")))
    assert [(a.kind, a.message) for a in other] == [("storage", "storage error: WAL write failed: ENOSPC")]


def test_uplink_paused_or_disconnected_with_a_backlog():
    up = {"enabled": True, "connected": True, "paused": False, "bootstrap": ["cloud:9093"], "backlog_records": 12,
          "backlog_bytes": 2048, "last_error": None}
    assert alerts(Facts(now=NOW, storage=storage(), uplink=up)) == []  # connected: a backlog is just work
    (paused,) = alerts(Facts(now=NOW, storage=storage(), uplink={**up, "paused": True}))
    assert (paused.kind, paused.severity) == ("uplink", "warning")
    assert paused.message == "uplink paused by an operator: 12 records (2.0 KiB) wait for cloud:9093"
    (down,) = alerts(Facts(now=NOW, storage=storage(), uplink={**up, "connected": False, "last_error": "refused"}))
    assert (down.kind, down.severity) == ("uplink", "critical") and down.message.endswith("waiting: refused")
    assert alerts(Facts(now=NOW, storage=storage(), uplink={**up, "connected": False, "backlog_records": 0})) == []


def test_ca_crl_rules_and_draining():
    found = alerts(Facts(now=NOW, storage=storage(), pki=[PkiFacts("crl", "crl.pem", "2026-12-01T00:00:00Z", False)],
                         rules_reload_error="rules.toml:3: bad", draining=True))
    assert [a.kind for a in found] == ["pki", "rules", "draining"]
    assert found[0].message == "CRL expires 2026-12-01T00:00:00Z: run `millstream pki crl`"
