"""Admin API routes for the measured workload (registered when `appliance.admin.server` is imported):

    GET /api/v1/measurements              live per-topic rates: the `millstream cost --measurements` JSON
    GET /api/v1/cost?scale=X&retention=D  the cost comparison of the live workload, priced with the
                                          `[cost] price_sheet` (or the built-in one); scale and retention
                                          ("7d", "36h" or seconds) project it, the baseline is kept
    GET /api/v1/inventory                 `[[streams]]`, placement findings against the live rates, and
                                          the unowned topics

The price sheet is read per request in a worker thread (a small file), so an edited sheet applies
at once and a broken one is a 409 naming the problem, never a failed start. A bad scale or
retention is a 400.

Shapes (models in appliance/admin/models.py: LiveMeasurements, CostReport, InventoryReport):

    /measurements  {"window_s": 3600.0, "covered_s": 125.3, "bucket_s": 10.0,
                    "topics": [{"topic", "bytes_in_per_s", "bytes_out_per_s", "consumer_groups",
                                "peak_to_average", "partitions", "retained_bytes", "retention_s" (null:
                                unlimited), "fan_out", "bytes_in_total", "bytes_out_total"}]}
    /cost          {"price_sheet", "currency", "workload": {"ingress_bytes_per_s", "egress_bytes_per_s",
                    "peak_ingress_bytes_per_s", "peak_egress_bytes_per_s", "partitions", "retained_bytes",
                    "topics", "retention"}, "designs": {"broker_attached"|"object_storage": {"design",
                    "title", "brokers", "total", "by_category": {category: monthly}, "lines": [{"category",
                    "item", "quantity", "unit", "unit_price", "monthly", "note"}]}}, "assumptions": [str],
                    "measured_s", and with a projection "projection": {"scale"?, "retention_s"?},
                    "baseline_totals": {design: total}}  (= `millstream cost --json` plus measured_s)
    /inventory     {"streams": [{"topic", "placement", "forwarded", "local_action", "owner", "source",
                    "retention_s", "consumers", "topics" (matched), "bytes_in_per_s"}],
                    "findings": [{"severity", "stream", "rule", "message"}] (errors first),
                    "unowned": [topic], "counts": {"error", "warning", "info"}, "worst_wan_outage_s"}
"""

from __future__ import annotations

import re
from typing import Any

import trio

from appliance.admin import cost_views
from appliance.admin.actions import AdminError
from appliance.admin.server import AdminServer, P, Response, json_response, route
from appliance.config import parse_duration
from appliance.cost.prices import load_price_sheet
from appliance.errors import ConfigError


def _monotonic(server: AdminServer) -> float:
    return server.app.broker.monotonic()


@route("GET", P + r"/measurements")
async def _measurements(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, cost_views.measurements_view(server.app, monotonic=_monotonic(server)))


def _projection(query: dict[str, str]) -> tuple[float | None, float | None]:
    scale = retention = None
    if query.get("scale"):
        try:
            scale = float(query["scale"])
        except ValueError:
            raise AdminError(400, f"scale must be a number, got {query['scale']!r}") from None
        if not scale > 0 or scale == float("inf"):
            raise AdminError(400, f"scale must be a number > 0, got {query['scale']!r}")
    if query.get("retention"):
        text = query["retention"]
        try:
            retention = parse_duration(float(text) if text.replace(".", "", 1).isdigit() else text)
        except ValueError as e:
            raise AdminError(400, f"retention: {e}") from None
    return scale, retention


@route("GET", P + r"/cost", query=True)
async def _cost(server: AdminServer, match: re.Match, body: Any, query: dict[str, str]) -> Response:
    scale, retention = _projection(query)
    path = server.app.settings.cost.price_sheet
    try:
        sheet = await trio.to_thread.run_sync(load_price_sheet, path)
    except ConfigError as e:
        raise AdminError(409, f"price sheet: {e}") from None
    try:
        doc = cost_views.cost_view(server.app, sheet, monotonic=_monotonic(server), scale=scale, retention_s=retention)
    except ValueError as e:
        raise AdminError(400, str(e)) from None
    return json_response(200, doc)


@route("GET", P + r"/inventory")
async def _inventory(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, cost_views.inventory_view(server.app, monotonic=_monotonic(server)))
