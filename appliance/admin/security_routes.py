"""Admin API routes for segmentation: rules and denials, certificates, rules reload.

Registered on the admin server's route table when `appliance.admin.server` is imported. The
work is done by the running `Security` (appliance/security/service.py); PKI calls (key
generation, file locks) run in a worker thread.
"""

from __future__ import annotations

import re
from typing import Any

import trio

from appliance.admin.actions import AdminError
from appliance.admin.server import AdminServer, P, Response, json_response, route
from appliance.security.pki import PkiError
from appliance.security.rules import RulesError


def _security(server: AdminServer) -> Any:
    sec = getattr(server.app, "security", None)
    if sec is None:
        raise AdminError(409, "security is not set up on this node")
    return sec


def _body(body: Any, example: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AdminError(400, f"expected a JSON object such as {example}")
    return body


@route("GET", P + r"/security")
async def _status(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, _security(server).status())


@route("GET", P + r"/certificates")
async def _certificates(server: AdminServer, match: re.Match, body: Any) -> Response:
    sec = _security(server)
    certs = await trio.to_thread.run_sync(sec.certificates)
    return json_response(200, {"certificates": certs, "warnings": list(sec.warnings),
                               "expiry_warning_days": server.app.settings.security.expiry_warning / 86400})


@route("POST", P + r"/certificates")
async def _issue(server: AdminServer, match: re.Match, body: Any) -> Response:
    sec = _security(server)
    b = _body(body, '{"zone": "cell-line3", "id": "press-7", "days": 365}')
    zone, id_ = b.get("zone"), b.get("id")
    if not isinstance(zone, str) or not isinstance(id_, str):
        raise AdminError(400, "zone and id are required strings")
    days, kind = b.get("days", 365), b.get("kind", "client")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
        raise AdminError(400, "days must be an integer 1-3650")
    dns, ips = b.get("dns", []), b.get("ips", [])
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (dns, ips)):
        raise AdminError(400, "dns and ips must be lists of strings")
    try:
        issued = await trio.to_thread.run_sync(
            lambda: sec.issue(zone, id_, kind=kind, days=days, dns=dns, ips=ips))
    except PkiError as e:
        raise AdminError(400, str(e)) from None
    r = issued.record
    return json_response(201, {
        "serial": r.serial, "zone": r.zone, "id": r.id, "kind": r.kind, "not_after": r.not_after,
        "certificate_pem": issued.cert_path.read_text(), "key_pem": issued.key_path.read_text(),
        "ca_pem": issued.ca_path.read_text(), "cert_path": str(issued.cert_path), "key_path": str(issued.key_path),
    })


@route("POST", P + r"/certificates/revoke")
async def _revoke(server: AdminServer, match: re.Match, body: Any) -> Response:
    sec = _security(server)
    b = _body(body, '{"serial": "4f2a...", "reason": "key_compromise"}')
    serial, id_, zone = b.get("serial"), b.get("id"), b.get("zone")
    reason = b.get("reason", "unspecified")
    if (serial is None) == (id_ is None):
        raise AdminError(400, "give either serial or id (with an optional zone)")
    try:
        done = await trio.to_thread.run_sync(lambda: sec.revoke(serial, id=id_, zone=zone, reason=reason))
    except PkiError as e:
        raise AdminError(404 if "not in the inventory" in str(e) else 400, str(e)) from None
    return json_response(200, {"revoked": [{"serial": r.serial, "identity": f"{r.zone}/{r.id}",
                                            "reason": r.revoke_reason} for r in done],
                               "note": "applies to the next handshake on every listener"})


@route("POST", P + r"/rules/reload")
async def _reload(server: AdminServer, match: re.Match, body: Any) -> Response:
    sec = _security(server)
    if not sec.enabled:
        raise AdminError(409, "no [security] rules file is configured (authorization is off)")
    try:
        rules = sec.reload_rules()
    except RulesError as e:
        raise AdminError(400, f"rules rejected, the previous rules stay in force: {e}") from None
    return json_response(200, {"reloaded": True, "source": rules.source, "zones": len(rules.zones),
                               "conduits": len(rules.conduits), "denies": len(rules.denies)})
