"""The Security tab: who reaches what (zones x listeners), recent denials, certificates.

Three views under one tab (v cycles them): Conduits (the matrix, and the conduits of the
highlighted zone), Denials (counters and the audit log, newest first) and Certificates (expiring
ones in yellow, expired in red). Its actions (issue a certificate, revoke one, reload the rules)
ask first and report through notifications; the app does the polling.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static, TabbedContent, TabPane

from appliance.admin.models import Certificate, Certificates, ConduitLink, SecurityStatus
from tui.dialogs import ConfirmDialog
from tui.panes import num, selected_key, sync_table

OP_SHORT = {"publish": "pub", "subscribe": "sub", "produce": "prod", "consume": "cons", "create_topic": "create",
            "delete_topic": "delete", "alter_topic": "alter", "describe": "desc", "group_join": "join",
            "group_commit": "commit", "admin": "admin"}
VIEWS = ("sec-conduits", "sec-denials", "sec-certs")
MAX_DAYS = 3650


def ops_text(ops: Sequence[str]) -> str:
    return ",".join(OP_SHORT.get(op, op) for op in ops)


def hhmmss(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def cert_style(c: Certificate, window_days: float) -> str:
    if c.revoked:
        return "dim"
    if c.status == "expired" or (c.days_left is not None and c.days_left <= 0):
        return "bold red"
    if c.days_left is not None and c.days_left <= window_days:
        return "bold yellow"
    return ""


def matrix(sec: SecurityStatus) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(listener columns, [(zone, cell per listener)]): each cell the operations the zone's
    conduits allow on that listener ("" none). Listeners named by conduits but not on this node
    come last, marked "?"."""
    here = [x.name for x in sec.listeners]
    elsewhere = sorted({lk.listener for lk in sec.links} - set(here))
    columns = here + elsewhere
    zones = [z.name for z in sec.zones] + sorted({lk.zone for lk in sec.links} - {z.name for z in sec.zones})
    rows = []
    for z in zones:
        cells = []
        for lst in columns:
            ops: list[str] = []
            for lk in sec.links:
                if lk.zone == z and lk.listener == lst:
                    ops += [op for op in lk.ops if op not in ops]
            cells.append(ops_text(sorted(ops, key=lambda op: list(OP_SHORT).index(op) if op in OP_SHORT else 99)))
        rows.append((z, cells))
    return [c if c in here else f"{c}?" for c in columns], rows


class SecurityPane(Vertical):
    BINDINGS = [
        Binding("v", "next_view", "View"),
        Binding("i", "issue", "Issue cert"),
        Binding("x", "revoke", "Revoke"),
        Binding("r", "reload_rules", "Reload rules"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.status: SecurityStatus | None = None
        self.certs: Certificates | None = None
        self._columns: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="security-summary")
        with TabbedContent(id="security-views", initial="sec-conduits"):
            with TabPane("Conduits", id="sec-conduits"):
                yield DataTable(id="zones-table", cursor_type="row", zebra_stripes=True)
                links = DataTable(id="links-table", cursor_type="row")
                for label, key in (("conduit", "conduit"), ("to", "listener"), ("allows", "ops"),
                                   ("on", "resources"), ("ids", "ids")):
                    links.add_column(label, key=key)
                yield links
            with TabPane("Denials", id="sec-denials"):
                yield Static("", id="denial-counters")
                denials = DataTable(id="denials-table", cursor_type="row", zebra_stripes=True)
                for label, key in (("UTC", "time"), ("identity", "who"), ("op", "op"), ("resource", "resource"),
                                   ("rule", "rule"), ("listener", "listener"), ("zone", "zone")):
                    denials.add_column(label, key=key)
                yield denials
            with TabPane("Certificates", id="sec-certs"):
                certs = DataTable(id="certs-table", cursor_type="row", zebra_stripes=True)
                for label, key in (("serial", "serial"), ("identity", "who"), ("not after", "not_after"),
                                   ("days", "days"), ("status", "status"), ("kind", "kind")):
                    certs.add_column(label, key=key)
                yield certs

    # --- rendering -------------------------------------------------------------------------------

    @property
    def view(self) -> str:
        return self.query_one("#security-views", TabbedContent).active

    def main_table(self) -> DataTable:
        return self.query_one({"sec-conduits": "#zones-table", "sec-denials": "#denials-table",
                               "sec-certs": "#certs-table"}.get(self.view, "#zones-table"), DataTable)

    def show(self, sec: SecurityStatus, certs: Certificates | None) -> None:
        self.status, self.certs = sec, certs
        d = sec.denials
        auth = (Text("authorization ON", style="bold green") if sec.authorization == "on"
                else Text("authorization OFF: every client may do everything", style="bold red"))
        summary = Text.assemble(auth, f"  {len(sec.zones)} zones, {len({lk.conduit for lk in sec.links})} conduits"
                                      f", {len(sec.deny_rules)} deny rules")
        summary.append(f"\ndenials {d.total}", style="bold red" if d.total else "")
        summary.append(f"  allowed {sec.allowed}  refused handshakes {sum(r.count for r in sec.handshake_refusals)}")
        if sec.last_reload_error:
            summary.append(f"\nreload rejected: {sec.last_reload_error}", style="red")
        self.query_one("#security-summary", Static).update(summary)
        self._show_matrix(sec)
        self._show_denials(sec)
        if certs is not None:
            self._show_certs(certs)

    def unavailable(self, why: str) -> None:
        self.query_one("#security-summary", Static).update(Text(why, style="yellow"))

    def _show_matrix(self, sec: SecurityStatus) -> None:
        table = self.query_one("#zones-table", DataTable)
        columns, rows = matrix(sec)
        if columns != self._columns:
            table.clear(columns=True)
            table.add_column("zone", key="zone")
            for i, c in enumerate(columns):
                table.add_column(c, key=f"l{i}")
            self._columns = columns
        sync_table(table, [(z, [Text(z, style="bold"), *[Text(c or "-", style="" if c else "dim") for c in cells]])
                           for z, cells in rows])
        self.show_links()

    def show_links(self) -> None:
        sec = self.status
        zone = selected_key(self.query_one("#zones-table", DataTable))
        links: list[ConduitLink] = [] if sec is None else [lk for lk in sec.links if lk.zone == zone]
        sync_table(self.query_one("#links-table", DataTable), [
            (f"{lk.conduit}>{lk.listener}", [lk.conduit, lk.listener, ops_text(lk.ops), ", ".join(lk.resources) or "*",
                                             ", ".join(lk.ids) or "any"])
            for lk in links])
        self.query_one("#links-table", DataTable).border_title = f"conduits from {zone}" if zone else "conduits"

    def _show_denials(self, sec: SecurityStatus) -> None:
        d = sec.denials

        def top(counter: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:4]) or "-"

        text = Text(f"by listener: {top(d.by_listener)}\nby op: {top(d.by_op)}   by rule: {top(d.by_rule)}")
        if d.dropped:
            text.append(f"\n{d.dropped} older denials counted but no longer listed", style="dim")
        self.query_one("#denial-counters", Static).update(text)
        rows = []
        for i, x in enumerate(reversed(d.recent)):  # newest first
            rows.append((f"{d.total - i}", [hhmmss(x.time), Text(x.identity), Text(OP_SHORT.get(x.op, x.op), style="red"),
                                            Text(x.resource), Text(x.rule or "default", style="dim" if x.rule is None else ""),
                                            x.listener, x.zone or "-"]))
        sync_table(self.query_one("#denials-table", DataTable), rows)

    def _show_certs(self, certs: Certificates) -> None:
        window = certs.expiry_warning_days
        rows = []
        for c in sorted(certs.certificates, key=lambda c: (c.revoked, c.not_after)):
            style = cert_style(c, window)
            status = "EXPIRING" if style == "bold yellow" else c.status.replace("_", " ")
            days = None if c.days_left is None else round(c.days_left)
            rows.append((c.serial, [Text(c.serial[:10], style=style), Text(c.identity, style=style), c.not_after[:10],
                                    num(days), Text(status, style=style), c.kind]))
        sync_table(self.query_one("#certs-table", DataTable), rows)

    @property
    def selected_cert(self) -> Certificate | None:
        key = selected_key(self.query_one("#certs-table", DataTable))
        if self.certs is None or key is None:
            return None
        return next((c for c in self.certs.certificates if c.serial == key), None)

    @on(DataTable.RowHighlighted, "#zones-table")
    def _zone_highlighted(self) -> None:
        self.show_links()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Focus can stay on a table here while another tab shows: these keys belong to this tab.
        return getattr(self.app, "tab", "security") == "security"

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Stop here: the outer tab pane would otherwise switch the console back to this tab when
        # Textual moves focus among these (hidden) tables as the operator leaves it (nested tabs).
        event.stop()

    @on(TabbedContent.TabActivated, "#security-views")
    def _view_changed(self, event: TabbedContent.TabActivated) -> None:
        event.stop()  # the app's own tab handler is for the outer tabs
        focused = self.screen.focused
        if focused is not None and self in focused.ancestors:  # focusing a hidden tab's table would show it
            self.main_table().focus()

    # --- actions ---------------------------------------------------------------------------------

    def action_next_view(self) -> None:
        tabs = self.query_one("#security-views", TabbedContent)
        tabs.active = VIEWS[(VIEWS.index(tabs.active) + 1) % len(VIEWS)] if tabs.active in VIEWS else VIEWS[0]

    def action_issue(self) -> None:
        zones = [] if self.status is None else [z.name for z in self.status.zones]

        def chosen(req: NewCertificate | None) -> None:
            if req is not None:
                self._issue(req)

        self.app.push_screen(IssueCertificateDialog(zones), chosen)

    @work(group="actions", exit_on_error=False)
    async def _issue(self, req: NewCertificate) -> None:
        ok, issued = await self.app.attempt(f"issue a certificate for {req.zone}/{req.id}",  # type: ignore[attr-defined]
                                            self.app.source.issue_certificate(req.zone, req.id, days=req.days))  # type: ignore[attr-defined]
        if ok:
            self.app.notify(f"serial {issued.serial}, valid until {issued.not_after}\n"
                            f"on the appliance: {issued.cert_path}\nkey: {issued.key_path} (0600)",
                            title=f"issued {issued.zone}/{issued.id}", timeout=20)

    def action_revoke(self) -> None:
        if self.view != "sec-certs":
            self.query_one("#security-views", TabbedContent).active = "sec-certs"
            self.app.notify("choose the certificate to revoke, then x", severity="warning")
            return
        c = self.selected_cert
        if c is None:
            self.app.notify("select a certificate first", severity="warning")
            return
        if c.revoked:
            self.app.notify(f"{c.serial[:12]} ({c.identity}) is already revoked", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._revoke(c)

        question = (f"Revoke certificate [b]{c.identity}[/b] ({c.kind}), serial {c.serial}?\n"
                    "Its next TLS handshake on every listener is refused; this cannot be undone.")
        self.app.push_screen(ConfirmDialog(question, confirm_label="Revoke", danger=True), confirmed)

    @work(group="actions", exit_on_error=False)
    async def _revoke(self, c: Certificate) -> None:
        ok, done = await self.app.attempt(f"revoke {c.identity}",  # type: ignore[attr-defined]
                                          self.app.source.revoke_certificate(c.serial))  # type: ignore[attr-defined]
        if ok:
            self.app.notify(f"revoked {', '.join(r.serial[:12] for r in done.revoked)} ({c.identity})",
                            title="certificates")

    def action_reload_rules(self) -> None:
        source = (self.status.rules_file if self.status else None) or "the rules file"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._reload()

        question = (f"Reload the rules from {source}?\nOpen connections stay; every new decision uses the new "
                    "rules. An invalid file is refused and the current rules stay in force.")
        self.app.push_screen(ConfirmDialog(question, confirm_label="Reload"), confirmed)

    @work(group="actions", exit_on_error=False)
    async def _reload(self) -> None:
        ok, r = await self.app.attempt("reload the rules", self.app.source.reload_rules())  # type: ignore[attr-defined]
        if ok:
            self.app.notify(f"{r.zones} zones, {r.conduits} conduits, {r.denies} deny rules from {r.source}",
                            title="rules reloaded")


@dataclass(frozen=True)
class NewCertificate:
    zone: str
    id: str
    days: int


class IssueCertificateDialog(ModalScreen[NewCertificate | None]):
    """Zone, id and validity; the summary line says what Issue will do."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, zones: Sequence[str]) -> None:
        super().__init__()
        self.zones = list(zones)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Issue certificate", classes="title")
            hint = ", ".join(self.zones[:4]) + (", ..." if len(self.zones) > 4 else "")
            yield Input(placeholder=f"zone ({hint})" if hint else "zone", id="zone")
            yield Input(placeholder="id, e.g. press-7 (the certificate's CN)", id="id")
            yield Input(value="365", placeholder="days valid", id="days", type="integer")
            yield Static("", id="summary", classes="summary")
            with Horizontal(classes="buttons"):
                yield Button("Issue", id="issue", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#zone", Input).focus()
        self._update_summary()

    def _read(self) -> NewCertificate:
        zone = self.query_one("#zone", Input).value.strip()
        id_ = self.query_one("#id", Input).value.strip()
        if not zone or not id_:
            raise ValueError("give a zone and an id")
        try:
            days = int(self.query_one("#days", Input).value or "0")
        except ValueError:
            raise ValueError("days must be a whole number") from None
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days must be 1-{MAX_DAYS}")
        return NewCertificate(zone, id_, days)

    @on(Input.Changed)
    def _update_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        try:
            c = self._read()
        except ValueError as e:
            summary.update(str(e))
            return
        unknown = f" (zone {c.zone!r} is not in the rules: it reaches nothing)" if self.zones and c.zone not in self.zones else ""
        summary.update(f"Issue a client certificate for {c.zone}/{c.id}, valid {c.days} days; the key is "
                       f"written 0600 on the appliance.{unknown}")

    @on(Input.Submitted)
    @on(Button.Pressed, "#issue")
    def _issue(self) -> None:
        try:
            c = self._read()
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        self.dismiss(c)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
