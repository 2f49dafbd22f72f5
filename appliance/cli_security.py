"""`millstream pki ...` and `millstream rules ...`: the site CA and the access rules from a shell.

Heavy imports (cryptography) happen inside the handlers so `millstream --help` stays fast.
Exit codes: 0 done (explain: allowed), 1 refused/failed (explain: denied), 2 usage or invalid file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from appliance import cli_admin

PASSPHRASE_ENV = "MILLSTREAM_CA_PASSPHRASE"
DEFAULT_DATA_DIR = "./var"


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", default=DEFAULT_DATA_DIR,
                   help=f"data directory holding pki/ (default {DEFAULT_DATA_DIR})")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `pki` and `rules` commands; each sets `handler` for the dispatcher."""
    pki = sub.add_parser("pki", help="site CA: init, issue, revoke, list certificates",
                         description="The site certificate authority in <data-dir>/pki.")
    pki.set_defaults(handler=lambda a: _usage(pki))
    ps = pki.add_subparsers(dest="pki_command", metavar="ACTION")

    p = ps.add_parser("init", help="create the site CA (key 0600, optionally encrypted)")
    _data_dir(p)
    p.add_argument("--site", default="site", help="site name in the CA's subject")
    p.add_argument("--days", type=int, default=3650, help="CA validity (default 3650)")
    p.add_argument("--encrypt", action="store_true",
                   help=f"encrypt the CA key with a passphrase (from ${PASSPHRASE_ENV} or a prompt)")
    p.set_defaults(handler=cmd_pki_init)

    p = ps.add_parser("issue", help="issue a certificate whose identity is (zone, id)",
                      description="Writes <id>.crt, <id>.key (0600) and ca.crt to --out "
                                  "(default <data-dir>/pki/out/<zone>.<id>). Identity: SAN URI "
                                  "urn:millstream:zone:<zone>:id:<id>, subject CN=<id>, OU=<zone>.")
    _data_dir(p)
    p.add_argument("--zone", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--dns", action="append", default=[], metavar="NAME", help="DNS name (repeatable)")
    p.add_argument("--ip", action="append", default=[], metavar="ADDR", help="IP address (repeatable)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--server", dest="kind", action="store_const", const="server", help="server certificate")
    kind.add_argument("--client", dest="kind", action="store_const", const="client",
                      help="client certificate (default)")
    p.add_argument("--out", metavar="DIR", help="output directory")
    p.set_defaults(handler=cmd_pki_issue, kind="client")

    p = ps.add_parser("revoke", help="revoke a certificate and re-sign the CRL")
    _data_dir(p)
    p.add_argument("serial", nargs="?", help="serial in hex as `pki list` shows it (or a unique prefix)")
    p.add_argument("--id", help="revoke every unrevoked certificate of this id")
    p.add_argument("--zone", help="with --id: only in this zone")
    p.add_argument("--reason", default="unspecified",
                   choices=["unspecified", "key_compromise", "ca_compromise", "affiliation_changed",
                            "superseded", "cessation_of_operation"])
    p.set_defaults(handler=cmd_pki_revoke)

    p = ps.add_parser("list", help="issued certificates: serial, identity, expiry, status")
    _data_dir(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_pki_list)

    p = ps.add_parser("crl", help="re-sign the CRL with a fresh next-update date")
    _data_dir(p)
    p.add_argument("--days", type=int, default=365, help="CRL validity (default 365)")
    p.set_defaults(handler=cmd_pki_crl)

    rules = sub.add_parser("rules", help="access rules: explain a decision, check a file")
    rules.set_defaults(handler=lambda a: _usage(rules))
    rs = rules.add_subparsers(dest="rules_command", metavar="ACTION")
    p = rs.add_parser("explain", help="which rule allows or denies an operation, and why",
                      description="Exit code 0 when allowed, 1 when denied.")
    _data_dir(p)
    p.add_argument("--rules", metavar="FILE", help="rules file (default <data-dir>/rules.toml)")
    p.add_argument("--id", required=True, help="client id (certificate CN)")
    p.add_argument("--zone", required=True, help="client zone")
    p.add_argument("--listener", required=True, help="listener name the client connects to")
    p.add_argument("--op", required=True, help="publish, subscribe, produce, consume, create_topic, "
                   "delete_topic, alter_topic, describe, group_join, group_commit, admin")
    p.add_argument("resource", nargs="?", default="", help="MQTT topic/filter, Kafka topic or group")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_rules_explain)

    p = rs.add_parser("check", help="validate a rules file")
    _data_dir(p)
    p.add_argument("file", nargs="?", help="rules file (default <data-dir>/rules.toml)")
    p.set_defaults(handler=cmd_rules_check)

    p = rs.add_parser("reload", help="make a running appliance re-read its rules file (admin API)",
                      description="Exit code 0 when the new rules are in force, 1 when refused (the previous "
                                  "rules stay in force; the message says file:line: why).")
    cli_admin.admin_options(p)
    p.set_defaults(handler=cli_admin.guarded(cli_admin.cmd_rules_reload))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _fail(msg: str, code: int = 1) -> int:
    print(f"millstream: {msg}", file=sys.stderr)
    return code


def _passphrase(pki: Any, *, creating: bool = False) -> bytes | None:
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode()
    if not creating and not pki.ca_key_encrypted():
        return None
    if not sys.stdin.isatty():
        return None  # the PKI then says the key is encrypted and how to give the passphrase
    first = getpass.getpass("CA passphrase: ")
    if creating and getpass.getpass("again: ") != first:
        raise ValueError("passphrases differ")
    return first.encode()


def _run_pki(fn: Any) -> int:
    from appliance.security.pki import PkiError

    try:
        return fn()
    except PkiError as e:
        return _fail(f"pki: {e}")
    except ValueError as e:
        return _fail(f"pki: {e}")


def cmd_pki_init(args: argparse.Namespace) -> int:
    from appliance.security.pki import Pki

    def run() -> int:
        pki = Pki(args.data_dir)
        pw = _passphrase(pki, creating=True) if args.encrypt else None
        if args.encrypt and not pw:
            return _fail(f"pki: --encrypt needs a passphrase: set {PASSPHRASE_ENV} or run in a terminal", 2)
        cert = pki.init(site=args.site, passphrase=pw, days=args.days)
        print(f"site CA created in {pki.dir} ({'encrypted' if pw else 'unencrypted'} key, "
              f"valid until {cert.not_valid_after_utc:%Y-%m-%d})")
        print(f"trust anchor for clients: {pki.ca_cert_path}")
        return 0

    return _run_pki(run)


def cmd_pki_issue(args: argparse.Namespace) -> int:
    from appliance.security.pki import Pki

    def run() -> int:
        pki = Pki(args.data_dir)
        issued = pki.issue(args.zone, args.id, kind=args.kind, dns=args.dns, ips=args.ip, days=args.days,
                           out_dir=args.out, passphrase=_passphrase(pki))
        r = issued.record
        print(f"issued {r.kind} certificate serial {r.serial} for {r.zone}/{r.id}, valid until {r.not_after}")
        print(f"  certificate: {issued.cert_path}\n  key:         {issued.key_path} (0600)\n"
              f"  CA:          {issued.ca_path}")
        return 0

    return _run_pki(run)


def cmd_pki_revoke(args: argparse.Namespace) -> int:
    from appliance.security.pki import Pki

    def run() -> int:
        if (args.serial is None) == (args.id is None):
            return _fail("pki revoke: give a SERIAL or --id ID", 2)
        pki = Pki(args.data_dir)
        done = pki.revoke(args.serial, id=args.id, zone=args.zone, reason=args.reason,
                          passphrase=_passphrase(pki))
        for r in done:
            print(f"revoked {r.serial} ({r.zone}/{r.id}, reason {r.revoke_reason})")
        print(f"CRL updated: {pki.crl_path} (listeners apply it to the next handshake)")
        return 0

    return _run_pki(run)


def cmd_pki_list(args: argparse.Namespace) -> int:
    from appliance.security.pki import Pki

    def run() -> int:
        pki = Pki(args.data_dir)
        now = pki.clock()
        recs = pki.list()
        if args.json:
            print(json.dumps([{**r.__dict__, "dns": list(r.dns), "ips": list(r.ips), "status": r.status(now)}
                              for r in recs], indent=1))
            return 0
        rows = [("SERIAL", "ZONE", "ID", "KIND", "NOT AFTER", "STATUS")]
        rows += [(r.serial, r.zone, r.id, r.kind, r.not_after, r.status(now)) for r in recs]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        for w in pki.expiring(30):
            state = "EXPIRED" if w.expired else "expires"
            print(f"warning: {w.what} {w.subject} {state} {w.not_after}", file=sys.stderr)
        return 0

    return _run_pki(run)


def cmd_pki_crl(args: argparse.Namespace) -> int:
    from appliance.security.pki import Pki

    def run() -> int:
        pki = Pki(args.data_dir)
        crl = pki.refresh_crl(days=args.days, passphrase=_passphrase(pki))
        print(f"CRL re-signed: {len(list(crl))} revoked, next update {crl.next_update_utc:%Y-%m-%d}")
        return 0

    return _run_pki(run)


def _rules_path(args: argparse.Namespace, given: str | None) -> Path:
    return Path(given) if given else Path(args.data_dir) / "rules.toml"


def cmd_rules_explain(args: argparse.Namespace) -> int:
    from appliance.security.pki import NAME_RE, Identity
    from appliance.security.rules import OPS, RulesError, explain, load_rules

    if args.op not in OPS:
        return _fail(f"rules explain: unknown --op {args.op!r} (known: {', '.join(OPS)})", 2)
    for what, val in (("zone", args.zone), ("id", args.id)):
        if not NAME_RE.fullmatch(val):
            return _fail(f"rules explain: invalid {what} {val!r}", 2)
    try:
        rules = load_rules(_rules_path(args, args.rules))
    except RulesError as e:
        return _fail(f"rules: {e}", 2)
    ex = explain(rules, Identity(args.zone, args.id), None, args.listener, args.op, args.resource)
    if args.json:
        d = ex.decision
        print(json.dumps({"allowed": d.allowed, "rule": d.rule_name, "reason": d.reason,
                          "limits": d.limits.__dict__ if d.limits else None, "trace": list(ex.trace)}))
    else:
        print(ex.render())
    return 0 if ex.decision.allowed else 1


def cmd_rules_check(args: argparse.Namespace) -> int:
    from appliance.security.rules import RulesError, load_rules

    path = _rules_path(args, args.file)
    try:
        rules = load_rules(path)
    except RulesError as e:
        return _fail(f"rules: {e}", 2)
    print(f"{path}: OK ({len(rules.zones)} zones, {len(rules.conduits)} conduits, {len(rules.denies)} denies)")
    return 0
