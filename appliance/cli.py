"""The `millstream` command line (also `python -m appliance` and `millstream.pyz`)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from typing import Any

from appliance import __version__
from appliance.cli_security import register as register_security
from appliance.errors import ConfigError


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the appliance", description="Run the plant or cloud role.")
    p.add_argument("--role", choices=["plant", "cloud"], help="plant (default) or cloud")
    p.add_argument("--config", metavar="FILE", help="site config (TOML)")
    p.add_argument("--data-dir", metavar="DIR", help="WAL, metadata and certificates (default ./var)")
    p.add_argument("--kafka-listen", metavar="HOST:PORT", help="Kafka listener (default 0.0.0.0:9092)")
    p.add_argument("--advertised-host", metavar="HOST", help="host name Kafka clients are told to use")
    p.add_argument("--admin-listen", metavar="HOST:PORT", help="admin API (default 127.0.0.1:9644)")
    p.add_argument("--node-id", metavar="N", type=int, help="broker id (default 1)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-file", metavar="FILE", help="write logs to a rotating file instead of stderr")
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (throwaway test data only)")
    p.add_argument("--object-store", metavar="URL",
                   help="file:///dir or s3://bucket/prefix?endpoint=http://host:port (default <data-dir>/objects)")


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
    put("log", "level", args.log_level)
    put("log", "file", args.log_file)
    put("storage", "object_store", args.object_store)
    if args.no_fsync:
        put("storage", "fsync", False)
    return o


def version_info() -> dict[str, Any]:
    from appliance.kafka.records import crc32c_is_native

    return {
        "millstream": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "crc32c": "c" if crc32c_is_native() else "python (slow)",
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
    logs.configure(settings.log.level, settings.log.file)
    return run_appliance(settings)


def cmd_config_check(args: argparse.Namespace) -> int:
    from appliance.config import describe, load_settings

    settings = load_settings(args.file)
    print(f"{args.file}: OK")
    for section, values in describe(settings).items():
        print(f"[{section}]")
        for k, v in values.items():
            print(f"  {k} = {json.dumps(v)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="millstream", description="Millstream edge-to-cloud streaming appliance")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    v = sub.add_parser("version", help="print version and runtime details")
    v.add_argument("--json", action="store_true")
    c = sub.add_parser("config", help="site config tools")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION")
    chk = csub.add_parser("check", help="validate a config file and print the effective settings")
    chk.add_argument("file")
    register_security(sub)
    return parser


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
