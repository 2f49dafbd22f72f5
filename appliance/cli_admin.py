"""Admin commands of the `millstream` CLI: status, topics, groups, clients, uplink, certs, the TUI
(and `rules reload`, registered under `rules` by cli_security with `admin_options`/`guarded`).

Each talks to a running appliance through the admin API (`--admin URL`, default
http://127.0.0.1:9644, or `MILLSTREAM_ADMIN`), prints aligned tables for people and `--json` for
scripts. Exit status: 0 done, 1 the appliance refused or could not be reached (message on stderr).

`register(subparsers)` adds the commands; each parser stores its function as `handler`, which
`cli.main` calls (the same convention as the other command groups).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from appliance.admin.client import DEFAULT_URL, AdminAPIError, AdminClient
from appliance.admin.models import (
    Certificates,
    Clients,
    GroupInfo,
    Status,
    TopicInfo,
    UplinkStatus,
    human_bytes,
    human_duration_ms,
    human_uptime,
    to_plain,
)

Handler = Callable[[argparse.Namespace], int]


# --- formatting ----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns; numbers right-aligned."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) if rows else False
               for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in cells])


def _kv(pairs: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"millstream: {flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


# --- commands ------------------------------------------------------------------------------------

T = TypeVar("T")


def _client(args: argparse.Namespace) -> AdminClient:
    return AdminClient(args.admin)


def _print_json(obj: Any) -> None:
    print(json.dumps(to_plain(obj), indent=2))


def print_status(st: Status) -> None:
    print(f"role      {st.role}")
    print(f"version   {st.version}")
    print(f"node id   {st.node_id}")
    print(f"cluster   {st.cluster_id}")
    print(f"uptime    {human_uptime(st.uptime_s)}")
    print(f"health    {st.health}")
    print(f"topics    {st.topics} ({st.partitions} partitions, {st.records_total} records, {human_bytes(st.stored_bytes)})")
    print(f"kafka     {st.kafka.connections} connections, {st.kafka.requests_total} requests, {st.kafka.errors_total} errors")
    for listener in st.listeners:
        print(f"listen    {listener.name:<11} {listener.address}")
    if st.alerts:
        for a in st.alerts:
            print(f"{'critical' if a.severity == 'critical' else 'warning':<9} {a.message}")
    else:  # an older appliance: warnings as text only
        for w in st.warnings:
            print(f"warning   {w}")


def _show(args: argparse.Namespace, fetch: Callable[[AdminClient], T], render: Callable[[T], None]) -> int:
    """One read from the admin API, printed as JSON (--json) or as the command's table."""
    with _client(args) as c:
        result = fetch(c)
    _print_json(result) if args.json else render(result)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.status(), print_status)


def print_topics(topics: Sequence[TopicInfo]) -> None:
    rows = [(t.name, len(t.partitions), t.records, human_bytes(t.size_bytes),
             human_duration_ms(t.configs.get("retention.ms", "")), t.configs.get("cleanup.policy", ""))
            for t in topics]
    print(table(("TOPIC", "PARTITIONS", "RECORDS", "SIZE", "RETENTION", "CLEANUP"), rows))


def print_topic(t: TopicInfo) -> None:
    print(f"topic {t.name}  id {t.topic_id}")
    print()
    print(table(("PARTITION", "LOG START", "HIGH WATERMARK", "RECORDS", "SIZE"),
                [(p.partition, p.log_start, p.high_watermark, p.records, human_bytes(p.size_bytes)) for p in t.partitions]))
    print()
    print(table(("CONFIG", "VALUE", "SOURCE"),
                [(k, v, "topic" if k in t.overrides else "default") for k, v in sorted(t.configs.items())]))


def cmd_topics_list(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.topics(), print_topics)


def cmd_topics_describe(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.topic(args.name), print_topic)


def cmd_topics_create(args: argparse.Namespace) -> int:
    configs = _kv(args.config, "--config")
    if args.retention_ms is not None:
        configs["retention.ms"] = str(args.retention_ms)
    with _client(args) as c:
        t = c.create_topic(args.name, args.partitions, configs)
    if args.json:
        _print_json(t)
    else:
        print(f"created topic {t.name} with {len(t.partitions)} partition(s)")
    return 0


def cmd_topics_delete(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.delete_topic(args.name)
    print(json.dumps({"deleted": args.name}) if args.json else f"deleted topic {args.name}")
    return 0


def cmd_topics_alter(args: argparse.Namespace) -> int:
    configs: dict[str, str | None] = dict(_kv(args.config, "--config"))
    if args.retention_ms is not None:
        configs["retention.ms"] = str(args.retention_ms)
    for key in args.reset:
        configs[key] = None
    with _client(args) as c:
        t = c.alter_topic(args.name, configs, args.partitions)
    if args.json:
        _print_json(t)
    else:
        changed = ", ".join(f"{k}={'(default)' if v is None else v}" for k, v in configs.items())
        if args.partitions is not None:
            changed = ", ".join(filter(None, [changed, f"partitions={args.partitions}"]))
        print(f"altered topic {t.name}: {changed}")
    return 0


def print_groups(groups: Sequence[GroupInfo]) -> None:
    print(table(("GROUP", "STATE", "MEMBERS", "GENERATION", "PARTITIONS", "LAG"),
                [(g.group_id, g.state, len(g.members), g.generation, len(g.partitions), g.total_lag) for g in groups]))


def print_group(g: GroupInfo) -> None:
    print(f"group {g.group_id}  state {g.state}  generation {g.generation}  protocol {g.protocol or '-'}")
    print()
    if g.members:
        print(table(("MEMBER", "CLIENT", "HOST"), [(m.member_id, m.client_id, m.client_host) for m in g.members]))
        print()
    print(table(("TOPIC", "PARTITION", "COMMITTED", "HIGH WATERMARK", "LAG"),
                [(p.topic, p.partition, p.committed, p.high_watermark, p.lag) for p in g.partitions]))


def cmd_groups_list(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.groups(), print_groups)


def cmd_groups_describe(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.group(args.group), print_group)


def print_clients(c: Clients) -> None:
    if c.mqtt_enabled:
        shown = f" ({len(c.mqtt)} shown)" if c.mqtt_total > len(c.mqtt) else ""
        print(f"MQTT sessions: {max(c.mqtt_total, len(c.mqtt))}{shown}")
        print(table(("CLIENT ID", "STATE", "PEER", "IDENTITY", "ZONE", "SUBS", "QUEUED", "UP"),
                    [(s.client_id, "online" if s.connected else "offline", s.peer, s.principal or s.username,
                      s.zone, len(s.subscriptions), s.queued,
                      None if s.connected_s is None else human_uptime(s.connected_s)) for s in c.mqtt]))
    else:
        print("MQTT: off on this node")
    print()
    shown = f" ({len(c.kafka)} shown)" if c.kafka_total > len(c.kafka) else ""
    print(f"Kafka connections: {max(c.kafka_total, len(c.kafka))}{shown}")
    print(table(("CONN", "LISTENER", "PEER", "CLIENT ID", "IDENTITY", "ZONE", "REQUESTS", "UP"),
                [(k.conn_id, k.listener, k.peer, k.client_id, k.principal, k.zone, k.requests,
                  human_uptime(k.connected_s)) for k in c.kafka]))


def cmd_clients(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.clients(args.limit), print_clients)


def print_uplink(u: UplinkStatus) -> None:
    if not u.enabled:
        print("uplink    off on this node ([uplink] enabled = true in the plant's site config)")
        return
    state = "paused" if u.paused else ("connected" if u.connected else "disconnected")
    print(f"uplink    {state} to {', '.join(u.bootstrap) or '-'}")
    print(f"sent      {u.sent_records} records, {human_bytes(u.sent_bytes)}")
    print(f"backlog   {u.backlog_records} records, {human_bytes(u.backlog_bytes)}")
    print(f"rate      {u.throughput_records_per_s:.0f} records/s, {human_bytes(u.throughput_bytes_per_s)}/s"
          + (f" (cap {human_bytes(u.bandwidth_cap)}/s)" if u.bandwidth_cap else ""))
    if u.lost_records:
        print(f"lost      {u.lost_records} records (retention removed them before they were sent)")
    if u.last_error:
        print(f"error     {u.last_error}")
    if u.topics:
        print()
        print(table(("TOPIC", "CLOUD TOPIC", "PRIORITY", "PARTITIONS", "BACKLOG", "BYTES", "AGE S"),
                    [(name, t.cloud_topic, t.priority, t.partitions, t.backlog_records, human_bytes(t.backlog_bytes),
                      round(t.backlog_seconds)) for name, t in sorted(u.topics.items())]))


def cmd_uplink(args: argparse.Namespace) -> int:
    action = getattr(args, "uplink_command", None) or "status"
    with _client(args) as c:
        u = {"status": c.uplink, "pause": c.pause_uplink, "resume": c.resume_uplink}[action]()
    if args.json:
        _print_json(u)
        return 0
    if action != "status":
        print(f"uplink {'paused: records are kept here until resumed' if action == 'pause' else 'resumed'}")
    print_uplink(u)
    return 0


def print_certificates(certs: Certificates) -> None:
    window = certs.expiry_warning_days
    rows = []
    for c in certs.certificates:
        soon = c.status == "valid" and c.days_left is not None and c.days_left <= window
        rows.append((c.serial, c.zone, c.id, c.kind, c.not_after,
                     None if c.days_left is None else round(c.days_left),
                     c.status + (" (expiring)" if soon else "")))
    print(table(("SERIAL", "ZONE", "ID", "KIND", "NOT AFTER", "DAYS", "STATUS"), rows))
    for w in certs.warnings:
        print(f"warning: {w}", file=sys.stderr)


def cmd_certs_list(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.certificates(), print_certificates)


def cmd_certs_issue(args: argparse.Namespace) -> int:
    with _client(args) as c:
        issued = c.issue_certificate(args.zone, args.id, days=args.days, kind=args.kind)
    if args.json:
        _print_json(issued)
        return 0
    print(f"issued {issued.kind} certificate serial {issued.serial} for {issued.zone}/{issued.id}, "
          f"valid until {issued.not_after}")
    print(f"  on the appliance: {issued.cert_path}\n                    {issued.key_path} (0600)")
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, text, mode in ((f"{issued.id}.crt", issued.certificate_pem, 0o644),
                                 (f"{issued.id}.key", issued.key_pem, 0o600), ("ca.crt", issued.ca_pem, 0o644)):
            fd = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        print(f"  copied here:      {out}/{issued.id}.crt, {issued.id}.key (0600), ca.crt")
    return 0


def cmd_certs_revoke(args: argparse.Namespace) -> int:
    with _client(args) as c:
        done = c.revoke_certificate(args.serial, args.reason)
    if args.json:
        _print_json(done)
        return 0
    for r in done.revoked:
        print(f"revoked {r.serial} ({r.identity}), reason {r.reason or 'unspecified'}")
    if done.note:
        print(done.note)
    return 0


def cmd_rules_reload(args: argparse.Namespace) -> int:
    with _client(args) as c:
        r = c.reload_rules()
    if args.json:
        _print_json(r)
    else:
        print(f"rules reloaded from {r.source}: {r.zones} zones, {r.conduits} conduits, {r.denies} deny rules")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    # The console lives in the separate `tui` package, which depends on `appliance.admin` (models,
    # client) and never the other way round: it is launched by module name so no appliance module
    # imports its code.
    tui_app = importlib.import_module("tui.app")
    return tui_app.main(args.connect, log_file=args.log_file)


# --- wiring --------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """--admin and --json. On an action under `topics`/`groups` they default to SUPPRESS, so
    `topics --json list` and `topics list --json` both work (argparse would otherwise let the
    action's default overwrite the value given before it)."""
    default_url = os.environ.get("MILLSTREAM_ADMIN", DEFAULT_URL)
    p.add_argument("--admin", metavar="URL", default=argparse.SUPPRESS if nested else default_url,
                   help=f"admin API: http://HOST:PORT or unix:///PATH (default {DEFAULT_URL}, or $MILLSTREAM_ADMIN)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if nested else False,
                   help="print JSON instead of a table")


def admin_options(p: argparse.ArgumentParser) -> None:
    """--admin and --json for an admin command registered elsewhere (`rules reload`)."""
    _common(p)


def guarded(fn: Handler) -> Handler:
    """A handler that prints the admin API's refusal as one line and exits 1 (no traceback)."""
    return _guarded(fn)


def _guarded(fn: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except AdminAPIError as e:
            print(f"millstream: {e.message}", file=sys.stderr)
            return 1
        except BrokenPipeError:  # `millstream topics | head`: the reader left, that is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    return run


def register(sub: argparse._SubParsersAction) -> None:
    """Add status, topics, groups, clients, uplink, certs and tui to the `millstream` parser."""
    p = sub.add_parser("status", help="show a running appliance's status")
    _common(p)
    p.set_defaults(handler=_guarded(cmd_status))

    topics = sub.add_parser("topics", help="list, describe, create, delete or alter topics")
    tsub = topics.add_subparsers(dest="topics_command", metavar="ACTION")
    _common(topics)
    topics.set_defaults(handler=_guarded(cmd_topics_list))
    p = tsub.add_parser("list", help="topics with partitions, records, size and retention")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_topics_list))
    p = tsub.add_parser("describe", help="one topic's partitions, offsets and configs")
    p.add_argument("name")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_topics_describe))
    p = tsub.add_parser("create", help="create a topic")
    p.add_argument("name")
    p.add_argument("-p", "--partitions", type=int, help="partition count (default: the broker's)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                   help="topic config, e.g. retention.ms=86400000 (repeatable)")
    p.add_argument("--retention-ms", type=int, metavar="MS", help="shorthand for -c retention.ms=MS")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_topics_create))
    p = tsub.add_parser("delete", help="delete a topic and its data")
    p.add_argument("name")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_topics_delete))
    p = tsub.add_parser("alter", help="change topic configs or add partitions")
    p.add_argument("name")
    p.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE", help="set a config (repeatable)")
    p.add_argument("--reset", action="append", default=[], metavar="KEY", help="return a config to its default")
    p.add_argument("--retention-ms", type=int, metavar="MS", help="shorthand for -c retention.ms=MS")
    p.add_argument("-p", "--partitions", type=int, help="new (larger) partition count")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_topics_alter))

    groups = sub.add_parser("groups", help="consumer groups and their lag")
    gsub = groups.add_subparsers(dest="groups_command", metavar="ACTION")
    _common(groups)
    groups.set_defaults(handler=_guarded(cmd_groups_list))
    p = gsub.add_parser("list", help="groups with state, members and total lag")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_groups_list))
    p = gsub.add_parser("describe", help="one group's members and lag per partition")
    p.add_argument("group")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_groups_describe))

    p = sub.add_parser("clients", help="MQTT sessions and Kafka connections with identity and zone")
    p.add_argument("--limit", type=int, metavar="N", help="at most N of each (default 1000)")
    _common(p)
    p.set_defaults(handler=_guarded(cmd_clients))

    uplink = sub.add_parser("uplink", help="the plant-to-cloud uplink: status, pause, resume")
    usub = uplink.add_subparsers(dest="uplink_command", metavar="ACTION")
    _common(uplink)
    uplink.set_defaults(handler=_guarded(cmd_uplink))
    for name, text in (("status", "link state, throughput and backlog per topic"),
                       ("pause", "stop forwarding (records are kept here; the backlog grows)"),
                       ("resume", "forward again")):
        p = usub.add_parser(name, help=text)
        _common(p, nested=True)
        p.set_defaults(handler=_guarded(cmd_uplink))

    certs = sub.add_parser("certs", help="certificates of a running appliance: list, issue, revoke (admin API)",
                           description="Like `millstream pki`, but through the admin API of a running appliance "
                                       "(no access to its data dir needed).")
    csub = certs.add_subparsers(dest="certs_command", metavar="ACTION")
    _common(certs)
    certs.set_defaults(handler=_guarded(cmd_certs_list))
    p = csub.add_parser("list", help="serial, identity, expiry, days left, status")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_certs_list))
    p = csub.add_parser("issue", help="issue a certificate for (zone, id)")
    p.add_argument("--zone", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.add_argument("--server", dest="kind", action="store_const", const="server", default="client",
                   help="a server certificate (default: client)")
    p.add_argument("--out", metavar="DIR", help="also write <id>.crt, <id>.key (0600) and ca.crt here")
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_certs_issue))
    p = csub.add_parser("revoke", help="revoke a certificate by serial (next handshake refuses it)")
    p.add_argument("serial", help="serial in hex as `certs list` shows it (or a unique prefix)")
    p.add_argument("--reason", default="unspecified",
                   choices=["unspecified", "key_compromise", "ca_compromise", "affiliation_changed",
                            "superseded", "cessation_of_operation"])
    _common(p, nested=True)
    p.set_defaults(handler=_guarded(cmd_certs_revoke))

    p = sub.add_parser("tui", help="the operator console (Textual) for a running appliance")
    p.add_argument("--connect", metavar="URL", default=os.environ.get("MILLSTREAM_ADMIN", DEFAULT_URL),
                   help=f"admin API to connect to (default {DEFAULT_URL})")
    p.add_argument("--log-file", metavar="FILE", help="where the console logs while it owns the terminal")
    p.set_defaults(handler=cmd_tui)
