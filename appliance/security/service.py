"""Segmentation at run time: the site CA, listener TLS contexts, the rules and their reloads.

One `Security` per running appliance (built by `appliance/runtime.py`):

- `setup()` (before anything listens): when a TLS listener exists, `ensure_server_cert` issues the
  listeners' certificate (creating the site CA on first start) and every TLS listener gets a
  `ServerContextSource`; the rules file is loaded (an invalid one refuses the start); without a
  rules file authorization is off and one warning says so.
- `check(...)`: the Authorizer's decision (audited and counted when it denies), or ALLOW when
  authorization is off. `peek(...)` decides without auditing, for filtering listings (Metadata's
  "all topics", ListGroups), as Kafka hides what a principal may not describe without logging it.
- `reload_rules()`: SIGHUP and the admin API. An invalid file raises RulesError (file:line: reason)
  and the old rules stay in force; connections are untouched.
- `check_expiry()`: at start and daily: certificates, the CA and the CRL expiring within
  `security.expiry_warning` are logged and shown in the admin status; a CRL about to lapse is
  re-signed when the CA key is not encrypted (or the passphrase is in MILLSTREAM_CA_PASSPHRASE).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance.config import ListenerSettings, Settings
from appliance.errors import StartupError
from appliance.logs import get_logger
from appliance.security.pki import CertRecord, ExpiryWarning, IssuedCert, Pki, PkiError, parse_time
from appliance.security.rules import Authorizer, Decision, DenialAudit, Rules, RulesError, decide, load_rules
from appliance.security.tls import ClientAuth, ServerContextSource

log = get_logger("security")

PASSPHRASE_ENV = "MILLSTREAM_CA_PASSPHRASE"
EXPIRY_CHECK_INTERVAL = 86400.0
ALLOW = Decision(True, None, "authorization off (no rules file)")
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class Security:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 passphrase: bytes | None = None) -> None:
        self.settings = settings
        self.clock = clock
        env = os.environ.get(PASSPHRASE_ENV)
        self.passphrase = passphrase if passphrase is not None else (env.encode() if env else None)
        self.rules_path: Path | None = settings.security.rules
        self.audit = DenialAudit(settings.security.audit_size)
        self.authorizer: Authorizer | None = None
        self.pki: Pki | None = None
        self.server_cert: IssuedCert | None = None
        self.warnings: list[str] = []
        self.expiry: list[ExpiryWarning] = []  # what the last check_expiry found (CA, CRL, certificates)
        self._inventory: tuple[tuple[int, int], list[CertRecord]] | None = None  # (stat key, records)
        self.refusals: Counter[tuple[str, str]] = Counter()  # (listener, reason) -> handshakes refused
        self.reloads = 0
        self.reload_failures = 0
        self.last_reload_error: str | None = None
        self.rules_loaded_at: float | None = None
        self._sources: dict[str, ServerContextSource] = {}

    # --- start-up ----------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Authorization is on (a rules file is configured)."""
        return self.authorizer is not None

    def listener_names(self) -> list[str]:
        s = self.settings
        return [x.name for proto in ("kafka", "mqtt", "admin") for x in s.listeners_of(proto)]

    def server_names(self) -> list[str]:
        names = ["localhost", "127.0.0.1", *self.settings.security.server_names]
        for x in self.settings.tls_listeners:
            if x.bind.host not in _WILDCARD_HOSTS:
                names.append(x.bind.host)
            if x.advertised_host:
                names.append(x.advertised_host)
        return list(dict.fromkeys(names))

    def setup(self) -> None:
        """Blocking file work done once before the listeners open. Raises StartupError."""
        s = self.settings
        self.pki = Pki(s.data_dir, pki_dir=s.pki_dir)
        if s.tls_listeners:
            try:
                self.server_cert = self.pki.ensure_server_cert(self.server_names(), passphrase=self.passphrase)
            except PkiError as e:
                raise StartupError(f"TLS listeners need the listener certificate: {e}") from None
            for x in s.tls_listeners:
                auth = ClientAuth.REQUIRED if x.security == "mtls" else ClientAuth.NONE
                try:
                    self._sources[x.name] = ServerContextSource.for_pki_dir(
                        self.pki.dir, self.server_cert.cert_path, self.server_cert.key_path, auth)
                except (OSError, ValueError) as e:
                    raise StartupError(f"listener {x.name}: cannot build its TLS context: {e}") from None
        if self.rules_path is None:
            log.warning("authorization_off", reason="no [security] rules file: every client may do everything",
                        listeners=",".join(self.listener_names()))
        else:
            try:
                rules = load_rules(self.rules_path)
            except RulesError as e:
                raise StartupError(f"rules: {e}") from None
            self.authorizer = Authorizer(rules, self.audit)
            self._loaded(rules)
        if self.pki.exists():
            self.check_expiry()

    def context_source(self, listener: ListenerSettings) -> ServerContextSource | None:
        return self._sources.get(listener.name)

    # --- decisions ---------------------------------------------------------------------------------

    def check(self, identity: Any, zone: str | None, listener: str, op: str, resource: str) -> Decision:
        if self.authorizer is None:
            return ALLOW
        return self.authorizer.check(self.clock(), identity, zone, listener, op, resource)

    def peek(self, identity: Any, zone: str | None, listener: str, op: str, resource: str) -> bool:
        if self.authorizer is None:
            return True
        return decide(self.authorizer.rules, identity, zone, listener, op, resource).allowed

    # --- rules -------------------------------------------------------------------------------------

    def _loaded(self, rules: Rules) -> None:
        self.rules_loaded_at = self.clock()
        known = set(self.listener_names())
        for c in rules.conduits:
            for to in c.to:
                if to not in known:
                    log.info("rules_listener_not_here", conduit=c.name, listener=to,
                             note="no listener of that name on this node; the conduit applies elsewhere")
        log.info("rules_loaded", file=str(rules.source), zones=len(rules.zones), conduits=len(rules.conduits),
                 denies=len(rules.denies))

    def reload_rules(self) -> Rules:
        """Re-read the rules file. RulesError (or StartupError-free PkiError) leaves the old rules."""
        if self.rules_path is None or self.authorizer is None:
            raise RulesError("<none>", None, "[security]", "no rules file is configured (authorization is off)")
        try:
            rules = self.authorizer.reload(self.rules_path)
        except RulesError as e:
            self.reload_failures += 1
            self.last_reload_error = str(e)
            log.error("rules_reload_rejected", error=str(e), note="the previous rules stay in force")
            raise
        self.reloads += 1
        self.last_reload_error = None
        self._loaded(rules)
        return rules

    # --- certificates ------------------------------------------------------------------------------

    def check_expiry(self) -> list[str]:
        """Log and keep warnings about what expires soon; re-sign a lapsing CRL when we can."""
        if self.pki is None or not self.pki.exists():
            self.warnings = []
            return []
        days = self.settings.security.expiry_warning / 86400
        out: list[str] = []
        try:
            found = self.pki.expiring(days)
            if any(w.what == "crl" for w in found):
                if self.pki.ca_key_encrypted() and self.passphrase is None:
                    log.warning("crl_refresh_needed", hint="the CA key is encrypted: run `millstream pki crl`")
                else:
                    self.pki.refresh_crl(passphrase=self.passphrase)
                    log.info("crl_refreshed", file=str(self.pki.crl_path))
                    found = self.pki.expiring(days)
        except (PkiError, OSError, ValueError) as e:
            log.error("expiry_check_failed", error=str(e))
            return self.warnings
        for w in found:
            state = "expired" if w.expired else "expires"
            text = f"{w.what} {w.subject} {state} {w.not_after}" + (f" (serial {w.serial})" if w.serial else "")
            out.append(text)
            log.warning("certificate_expiring", what=w.what, subject=w.subject, not_after=w.not_after,
                        expired=w.expired, serial=w.serial or "-")
        self.warnings = out
        self.expiry = found
        return out

    async def run(self, *, task_status: Any = None) -> None:
        """Daily expiry checks (the start-up one ran in setup)."""
        import trio

        if task_status is not None:
            task_status.started()
        while True:
            await trio.sleep(EXPIRY_CHECK_INTERVAL)
            await trio.to_thread.run_sync(self.check_expiry)

    def cert_records(self) -> list[CertRecord]:
        """The inventory, re-read only when its file changed (the admin status asks every second,
        and `millstream pki issue` may write it behind the running appliance's back)."""
        if self.pki is None or not self.pki.exists():
            return []
        try:
            st = self.pki.inventory_path.stat()
        except FileNotFoundError:
            return []
        key = (st.st_mtime_ns, st.st_size)
        if self._inventory is None or self._inventory[0] != key:
            self._inventory = (key, self.pki.list())
        return self._inventory[1]

    def certificates(self) -> list[dict[str, Any]]:
        if self.pki is None or not self.pki.exists():
            return []
        now = self.pki.clock()
        return [{"serial": r.serial, "zone": r.zone, "id": r.id, "identity": f"{r.zone}/{r.id}", "kind": r.kind,
                 "not_before": r.not_before, "not_after": r.not_after, "revoked": r.revoked,
                 "revoked_at": r.revoked_at, "status": r.status(now),
                 "days_left": round((parse_time(r.not_after) - now).total_seconds() / 86400, 2)}
                for r in self.cert_records()]

    def issue(self, zone: str, id: str, *, kind: str = "client", days: int = 365, dns: Sequence[str] = (),
              ips: Sequence[str] = ()) -> IssuedCert:
        if self.pki is None:
            raise PkiError("security is not set up")
        if not self.pki.exists():
            self.pki.init(passphrase=self.passphrase)
        return self.pki.issue(zone, id, kind=kind, days=days, dns=dns, ips=ips, passphrase=self.passphrase)

    def revoke(self, serial: str | None = None, *, id: str | None = None, zone: str | None = None,
               reason: str = "unspecified") -> list[Any]:
        if self.pki is None:
            raise PkiError("security is not set up")
        return self.pki.revoke(serial, id=id, zone=zone, reason=reason, passphrase=self.passphrase)

    # --- admin API ---------------------------------------------------------------------------------

    def status(self, recent: int = 100) -> dict[str, Any]:
        rules = self.authorizer.rules if self.authorizer else None
        return {
            "authorization": "on" if self.enabled else "off",
            "rules_file": str(self.rules_path) if self.rules_path else None,
            "rules_loaded_at": self.rules_loaded_at,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "last_reload_error": self.last_reload_error,
            "allowed": self.authorizer.allowed if self.authorizer else 0,
            "rules": rules.summary() if rules else None,
            "zones": [] if rules is None else [{"name": z.name, "sl_target": z.sl_target, "description": z.description}
                                               for z in rules.zones.values()],
            "listeners": [{"name": x.name, "protocol": x.protocol, "security": x.security, "zone": x.zone}
                          for proto in ("kafka", "mqtt", "admin") for x in self.settings.listeners_of(proto)],
            "links": [] if rules is None else rules.links(),
            "deny_rules": [] if rules is None else [d.name for d in rules.denies],
            "denials": self.audit.snapshot(recent),
            "handshake_refusals": [{"listener": lst, "reason": r, "count": n}
                                   for (lst, r), n in sorted(self.refusals.items())],
            "warnings": list(self.warnings),
        }
