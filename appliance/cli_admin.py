"""Admin commands of the `millstream` CLI: status, topics, groups and the TUI.

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
from typing import Any

from appliance.admin.client import DEFAULT_URL, AdminAPIError, AdminClient
from appliance.admin.models import (
    GroupInfo,
    Status,
    TopicInfo,
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
    for w in st.warnings:
        print(f"warning   {w}")


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        st = c.status()
    _print_json(st) if args.json else print_status(st)
    return 0


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
    with _client(args) as c:
        topics = c.topics()
    _print_json(topics) if args.json else print_topics(topics)
    return 0


def cmd_topics_describe(args: argparse.Namespace) -> int:
    with _client(args) as c:
        t = c.topic(args.name)
    _print_json(t) if args.json else print_topic(t)
    return 0


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
    with _client(args) as c:
        groups = c.groups()
    _print_json(groups) if args.json else print_groups(groups)
    return 0


def cmd_groups_describe(args: argparse.Namespace) -> int:
    with _client(args) as c:
        g = c.group(args.group)
    _print_json(g) if args.json else print_group(g)
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
    """Add status, topics, groups and tui to the `millstream` parser."""
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

    p = sub.add_parser("tui", help="the operator console (Textual) for a running appliance")
    p.add_argument("--connect", metavar="URL", default=os.environ.get("MILLSTREAM_ADMIN", DEFAULT_URL),
                   help=f"admin API to connect to (default {DEFAULT_URL})")
    p.add_argument("--log-file", metavar="FILE", help="where the console logs while it owns the terminal")
    p.set_defaults(handler=cmd_tui)
