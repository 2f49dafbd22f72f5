"""The Clients tab: MQTT sessions and Kafka connections, with identity and zone."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from appliance.admin.models import Clients, human_uptime
from tui.panes import num, sync_table

MQTT_VERSIONS = {3: "3.1", 4: "3.1.1", 5: "5"}


def _identity(principal: str | None, zone: str | None, username: str | None = None) -> str:
    who = principal or username or "-"
    return who if zone is None else f"{who} @{zone}"


class ClientsPane(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("", id="clients-summary")
        mqtt = DataTable(id="mqtt-table", cursor_type="row", zebra_stripes=True)
        for label, key in (("MQTT client", "id"), ("state", "state"), ("ver", "ver"), ("peer", "peer"),
                           ("identity", "who"), ("queue", "queued"), ("infl", "inflight"), ("subscriptions", "subs")):
            mqtt.add_column(label, key=key)  # sync_table sizes the columns
        mqtt.border_title = "MQTT sessions"
        yield mqtt
        kafka = DataTable(id="kafka-table", cursor_type="row", zebra_stripes=True)
        for label, key in (("conn", "id"), ("client id", "client"), ("peer", "peer"), ("identity", "who"),
                           ("requests", "requests"), ("up", "up"), ("listener", "listener")):
            kafka.add_column(label, key=key)
        kafka.border_title = "Kafka connections"
        yield kafka

    def show(self, clients: Clients) -> None:
        connected = sum(1 for s in clients.mqtt if s.connected)
        total = max(clients.mqtt_total, len(clients.mqtt))
        mqtt_line = (f"MQTT {total} session(s), {connected} connected" if clients.mqtt_enabled
                     else "MQTT off on this node")
        if total > len(clients.mqtt):
            mqtt_line += f" ({len(clients.mqtt)} shown)"
        self.query_one("#clients-summary", Static).update(
            Text(f"{mqtt_line}   Kafka {max(clients.kafka_total, len(clients.kafka))} connection(s)"))
        sync_table(self.query_one("#mqtt-table", DataTable), [
            (s.client_id, [
                Text(s.client_id),
                Text("online", style="green") if s.connected else Text("offline", style="dim"),
                MQTT_VERSIONS.get(s.protocol_version or 0, "-"),
                s.peer or "-",
                Text(_identity(s.principal, s.zone, s.username)),
                num(s.queued), num(s.inflight),
                Text(", ".join(f"{sub.topic_filter} q{sub.qos}" for sub in s.subscriptions) or "-")])
            for s in clients.mqtt
        ])
        sync_table(self.query_one("#kafka-table", DataTable), [
            (str(k.conn_id), [num(k.conn_id), Text(k.client_id or "-"), k.peer, Text(_identity(k.principal, k.zone)),
                              num(k.requests), human_uptime(k.connected_s), k.listener])
            for k in clients.kafka
        ])
