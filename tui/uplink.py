"""The Uplink tab: link state, throughput and the backlog per topic (pause/resume live in the app)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from appliance.admin.models import UplinkStatus, human_bytes
from tui.format import human_rate
from tui.panes import num, sync_table


def uplink_state(u: UplinkStatus) -> Text:
    if not u.enabled:
        return Text("OFF", style="dim")
    if u.paused:
        return Text("PAUSED", style="bold yellow")
    return Text("CONNECTED", style="bold green") if u.connected else Text("DISCONNECTED", style="bold red")


class UplinkPane(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("", id="uplink-state", classes="panel")
        table = DataTable(id="uplink-table", cursor_type="row", zebra_stripes=True)
        for label, key in (("topic", "topic"), ("prio", "prio"), ("backlog", "records"), ("bytes", "bytes"),
                           ("age", "age"), ("lost", "lost"), ("cloud topic", "cloud")):
            table.add_column(label, key=key)
        yield table
        yield Static("", id="uplink-errors")

    def show(self, u: UplinkStatus) -> None:
        state = self.query_one("#uplink-state", Static)
        if not u.enabled:
            state.update(Text.assemble(("uplink ", "bold"), uplink_state(u),
                                       "\nnot enabled on this node ([uplink] enabled = true in the plant's site config)"))
            sync_table(self.query_one("#uplink-table", DataTable), [])
            self.query_one("#uplink-errors", Static).update("")
            return
        cap = "no cap" if not u.bandwidth_cap else f"cap {human_rate(u.bandwidth_cap, 'B')}"
        text = Text.assemble(
            ("uplink ", "bold"), uplink_state(u), f"  to {', '.join(u.bootstrap) or '-'}\n",
            f"sending {human_rate(u.throughput_records_per_s)} records, "
            f"{human_rate(u.throughput_bytes_per_s, 'B')} ({cap})\n",
            f"sent {u.sent_records} records, {human_bytes(u.sent_bytes)}   "
            f"backlog {u.backlog_records} records, {human_bytes(u.backlog_bytes)}"
            + (f"   lost {u.lost_records}" if u.lost_records else ""),
        )
        if u.paused:
            text.append("\npaused by an operator: records are kept locally until resumed (u)", style="yellow")
        if u.last_error:
            text.append(f"\nlast error: {u.last_error}", style="red")
        state.update(text)
        sync_table(self.query_one("#uplink-table", DataTable), [
            (name, [Text(name), num(t.priority), num(t.backlog_records),
                    Text(human_bytes(t.backlog_bytes), justify="right"), Text(f"{t.backlog_seconds:.0f}s", justify="right"),
                    num(t.lost_records), Text(t.cloud_topic)])
            for name, t in sorted(u.topics.items())
        ])
        errors = [f"{name}/{p}: {why}" for name, t in sorted(u.topics.items()) for p, why in sorted(t.errors.items())]
        self.query_one("#uplink-errors", Static).update(Text("\n".join(errors), style="red"))
