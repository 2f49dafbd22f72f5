"""The `millstream` command line (also `python -m appliance` and `millstream.pyz`)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from typing import Any

from appliance import __version__, cli_admin, cli_cost, cli_service
from appliance.cli_security import register as register_security
from appliance.errors import ConfigError


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the appliance", description="Run the plant or cloud role.")
    p.add_argument("--role", choices=["plant", "cloud"], help="plant (default) or cloud")
    p.add_argument("--config", metavar="FILE", help="site config (TOML)")
    p.add_argument("--data-dir", metavar="DIR", help="WAL, metadata and certificates (default ./var)")
    p.add_argument("--kafka-listen", metavar="HOST:PORT", help="Kafka listener (default 0.0.0.0:9092)")
    p.add_argument("--advertised-host", metavar="HOST", help="host name Kafka clients are told to use")
    p.add_argument("--mqtt-listen", metavar="HOST:PORT", help="MQTT listener (default 0.0.0.0:1883; plant role)")
    p.add_argument("--admin-listen", metavar="HOST:PORT", help="admin API (default 127.0.0.1:9644)")
    p.add_argument("--node-id", metavar="N", type=int, help="broker id (default 1)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-file", metavar="FILE", help="write logs to a rotating file instead of stderr")
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (throwaway test data only)")
    p.add_argument("--object-store", metavar="URL",
                   help="file:///dir or s3://bucket/prefix?endpoint=http://host:port (default <data-dir>/objects)")
    p.add_argument("--tui", action="store_true",
                   help="also show the operator console in this terminal (logs go to a file); q stops the appliance")


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Command-line flags as raw config values, validated by the same parsers as the file."""
    o: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            o.setdefault(section, {})[key] = value

    put("node", "role", args.role)
    put("node", "data_dir", args.data_dir)
    put("node", "id", args.node_id)
    put("kafka", "listen", args.kafka_listen)
    put("kafka", "advertised_host", args.advertised_host)
    put("admin", "listen", args.admin_listen)
    put("mqtt", "listen", args.mqtt_listen)
    put("log", "level", args.log_level)
    put("log", "file", args.log_file)
    put("storage", "object_store", args.object_store)
    if args.no_fsync:
        put("storage", "fsync", False)
    return o


def _revision() -> str:
    """Git revision: baked into a pyz build, else `git describe` of a checkout, else "unknown"."""
    try:
        from appliance._build_info import REVISION  # written by packaging/build_pyz.py

        return REVISION
    except ImportError:
        pass
    import subprocess
    from pathlib import Path

    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=checkout,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def version_info() -> dict[str, Any]:
    # asks the native libraries directly (not appliance.kafka.records & co) to keep `version` quick
    import os

    import google_crc32c

    try:
        from msgpack import _cmsgpack  # noqa: F401  (the C extension; msgpack falls back to Python)

        msgpack_impl = "c"
    except ImportError:
        msgpack_impl = "python (slow)"
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        tls_lib = rust_openssl.openssl_version_text()
    except Exception as e:  # a broken native library must not break `version`
        tls_lib = f"unavailable ({type(e).__name__})"
    return {
        "millstream": __version__,
        "revision": _revision(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "pyz": os.environ.get("MILLSTREAM_PYZ", "no"),
        "crc32c": "c" if google_crc32c.implementation == "c" else "python (slow)",
        "msgpack": msgpack_impl,
        "cryptography": tls_lib,
    }


def cmd_version(args: argparse.Namespace) -> int:
    info = version_info()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"millstream {info['millstream']}")
        for k, v in info.items():
            if k != "millstream":
                print(f"  {k}: {v}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from appliance import logs
    from appliance.config import load_settings
    from appliance.runtime import run_appliance

    settings = load_settings(args.config, _overrides(args))
    if args.tui:
        from appliance.tui_runner import run_with_tui

        return run_with_tui(settings)
    logs.configure(settings.log.level, settings.log.file, settings.log.file_max_size, settings.log.file_backups)
    return run_appliance(settings)


def cmd_config_check(args: argparse.Namespace) -> int:
    import dataclasses

    from appliance import config
    from appliance.inventory.checks import check_settings
    from appliance.inventory.report import format_findings

    try:
        settings = config.load_settings(args.file)
    except ConfigError as e:
        if args.json:  # scripts get the problem on stdout too; the usual line still goes to stderr
            print(json.dumps({"file": args.file, "ok": False, "error": {"key": e.key, "problem": e.problem}}))
        raise
    sections = _plain_rules(config.describe(settings))
    arrays = _plain_rules(config.describe_arrays(settings))

    def left_at_default(cls: type, values: dict[str, Any]) -> list[str]:
        fields = {f.metadata.get("key") or f.name: f for f in dataclasses.fields(cls)}
        return [k for k, v in values.items() if k in fields and _field_default(fields[k]) == v]

    defaulted = {name: left_at_default(config.SECTIONS[name], values) for name, values in sections.items()}
    # Placement checks, against a running appliance's live rates with --admin (else the rate checks
    # say "not measured yet"); errors fail the check.
    measured = None
    if args.admin:
        measured = _live_measurements(args.admin)
        if measured is None:
            return 2
    findings = check_settings(settings, measured)
    failed = any(f.severity == "error" for f in findings)
    rates = rates_line(args.admin, measured)
    if args.json:
        print(json.dumps({"file": args.file, "ok": not failed, "settings": sections, "arrays": arrays,
                          "defaulted": defaulted, "findings": [f.as_dict() for f in findings],
                          "rates": {"admin": args.admin, "measured": measured is not None,
                                    "covered_s": measured.covered_s if measured else None,
                                    "window_s": measured.window_s if measured else None}}))
        return 1 if failed else 0
    print(f"{args.file}: OK")
    print("# every effective setting; \"# default\" marks keys the file leaves at their default")
    for section, values in sections.items():
        print(f"[{section}]")
        _print_values(values, defaulted[section])
    for section, items in arrays.items():
        if not items:
            print(f"# [[{section}]]: none")
        for values in items:
            print(f"[[{section}]]")
            _print_values(values, left_at_default(config.ARRAY_SECTIONS[section], values))
    lines = format_findings(findings)
    lines.insert(1, f"  {rates}")  # under the inventory heading: the settings above stay a valid config
    print("\n".join(lines))
    return 1 if failed else 0


def _live_measurements(url: str) -> Any:
    """The per-topic rates a running appliance measures (GET /api/v1/measurements), or None after
    saying why on stderr."""
    from appliance.cli_cost import fetch_measurements
    from appliance.inventory.measurements import MeasurementError, measurements_from_json

    try:
        return measurements_from_json(fetch_measurements(url))
    except (LookupError, MeasurementError) as e:
        print(f"millstream: config check: {e}", file=sys.stderr)
        return None


def rates_line(url: str | None, measured: Any) -> str:
    """What the placement checks were run against, printed before the findings."""
    from appliance.inventory.units import format_duration

    if measured is None:
        return ("rates: not measured (pass --admin URL to check the streams against a running "
                "appliance's live rates)")
    topics = sum(1 for m in measured.topics if m.carries_traffic)
    if measured.covered_s is None:
        span = "over its measurement window"
    elif measured.window_s and measured.covered_s < measured.window_s:  # just started: rates still settling
        span = f"over the {format_duration(measured.covered_s)} since it started (window {format_duration(measured.window_s)})"
    else:
        span = f"over the last {format_duration(measured.covered_s)}"
    return f"rates: measured live by {url} {span}: {topics} topic(s) with traffic"


def _print_values(values: dict[str, Any], defaulted: list[str]) -> None:
    for k, v in values.items():
        note = "  # default" if k in defaulted else ""
        print(f"  # {k} is unset{note}" if v is None else f"  {k} = {_toml_value(v)}{note}")


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)  # strings, numbers and booleans are written alike in JSON and TOML


def _plain_rules(value: Any) -> Any:
    """Named tuples in settings (e.g. [[uplink.forward]] rules) as tables of their set fields."""
    if hasattr(value, "_asdict"):
        return {k: _plain_rules(v) for k, v in value._asdict().items() if v is not None}
    if isinstance(value, dict):
        return {k: _plain_rules(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_rules(v) for v in value]
    return value


def _field_default(f: Any) -> Any:
    """A settings field's default as `describe` shows values (a required field has none)."""
    import dataclasses

    from appliance.config import _plain

    if f.default is not dataclasses.MISSING:
        return _plain(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return _plain(f.default_factory())
    return dataclasses.MISSING


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="millstream", description="Millstream edge-to-cloud streaming appliance",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    v = sub.add_parser("version", help="print version and runtime details")
    v.add_argument("--json", action="store_true")
    c = sub.add_parser("config", help="site config tools")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION")
    chk = csub.add_parser("check", help="validate a config file and print the effective settings")
    chk.add_argument("file")
    chk.add_argument("--json", action="store_true", help="print JSON (settings, arrays, defaulted keys, findings)")
    chk.add_argument("--admin", metavar="URL",
                     help="check the streams against the live rates of the appliance at URL (its admin API)")
    register_security(sub)
    cli_service.register(sub)
    cli_admin.register(sub)  # status, topics, groups, tui: clients of a running appliance's admin API
    cli_cost.register(sub)
    parser.epilog = "command tree:\n" + command_tree(parser)
    return parser


def command_tree(parser: argparse.ArgumentParser, indent: str = "  ") -> str:
    """Every command and sub-command with its help, for the end of `millstream --help`."""
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                lines.append(f"{indent}{name:<{max(1, 24 - len(indent))}} {helps.get(name, '')}".rstrip())
                nested = command_tree(sub, indent + "  ")
                if nested:
                    lines.append(nested)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "version": cmd_version}
    try:
        if args.command == "config" and getattr(args, "config_command", None) == "check":
            return cmd_config_check(args)
        if args.command in handlers:
            return handlers[args.command](args)
        if getattr(args, "handler", None):
            return args.handler(args)
    except ConfigError as e:
        print(f"millstream: config error: {e}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2
