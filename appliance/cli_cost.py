"""`millstream cost`: the measured workload priced on broker-attached (RF=3) and object-storage designs.

    millstream cost --measurements rates.json [--price-sheet FILE] [--scale X] [--retention D] [--json]
    millstream cost --admin http://127.0.0.1:9644 ...

Measurements: the JSON documented in appliance/inventory/measurements.py. `--admin URL` reads the
same document, measured live by a running appliance, from GET {URL}/api/v1/measurements (save it
with curl to price it again later with --measurements). The price sheet is the one given here, not
the appliance's (its own comparison is GET /api/v1/cost). Exit codes: 0 done, 2 usage or invalid input.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

MEASUREMENTS_PATH = "/api/v1/measurements"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="monthly cost of the measured workload on two storage designs",
                       description="Price the measured per-topic workload on (a) broker-attached storage with "
                                   "replication across zones and (b) object-storage-backed brokers, line by line.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--measurements", metavar="FILE", help="per-topic measurements (JSON)")
    src.add_argument("--admin", metavar="URL", help=f"read measurements from a running appliance ({MEASUREMENTS_PATH})")
    p.add_argument("--price-sheet", metavar="FILE", help="price sheet (TOML) laid over the built-in defaults")
    p.add_argument("--scale", metavar="X", type=float, help="project the workload scaled by X")
    p.add_argument("--retention", metavar="D", help="project with every topic kept for D (\"7d\", \"36h\")")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--print-price-sheet", action="store_true", help="print the built-in price sheet and exit")
    p.set_defaults(handler=cmd_cost)


def _fail(message: str) -> int:
    print(f"millstream: cost: {message}", file=sys.stderr)
    return 2


def fetch_measurements(url: str, timeout: float = 10.0) -> Any:
    target = url.rstrip("/") + MEASUREMENTS_PATH
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise LookupError(f"the admin API at {url} does not serve {MEASUREMENTS_PATH} (an older appliance?); "
                              "write the measurements to a file and use --measurements FILE") from None
        raise LookupError(f"{target}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise LookupError(f"cannot reach {target}: {getattr(e, 'reason', e)}") from None
    except json.JSONDecodeError as e:
        raise LookupError(f"{target}: not JSON: {e}") from None


def cmd_cost(args: argparse.Namespace) -> int:
    from appliance.config import parse_duration
    from appliance.cost.model import compare_projected
    from appliance.cost.prices import default_sheet_text, load_price_sheet
    from appliance.cost.render import render_table, to_json
    from appliance.errors import ConfigError
    from appliance.inventory.measurements import MeasurementError, load_measurements, measurements_from_json

    if args.print_price_sheet:
        print(default_sheet_text(), end="")
        return 0
    try:
        sheet = load_price_sheet(args.price_sheet)
    except ConfigError as e:
        return _fail(f"price sheet: {e}")
    try:
        if args.measurements:
            measured = load_measurements(args.measurements)
        elif args.admin:
            measured = measurements_from_json(fetch_measurements(args.admin))
        else:
            return _fail("no measurements: pass --measurements FILE or --admin URL")
    except (MeasurementError, LookupError) as e:
        return _fail(str(e))
    if not measured.topics:
        return _fail("the measurements list no topics")

    try:
        retention_s = parse_duration(args.retention) if args.retention is not None else None
        result, baseline, projection = compare_projected(measured.topics, sheet, scale=args.scale,
                                                         retention_s=retention_s)
    except ValueError as e:
        return _fail(str(e))
    if args.json:
        print(json.dumps(to_json(result, projection=projection or None, baseline=baseline), indent=2))
        return 0
    title = ""
    if projection:
        parts = [f"x{projection['scale']:g}" if "scale" in projection else "",
                 f"retention {args.retention}" if "retention_s" in projection else ""]
        title = "projection: " + ", ".join(p for p in parts if p)
    print(render_table(result, title=title, baseline=baseline))
    return 0
