"""The Millstream operator console: `millstream tui [--connect URL]`.

One Textual app with eight tabs (Overview, Topics, Groups, Clients, Uplink, Security, Logs, Cost; the
labels carry their number keys, "1 Overview", and fit an 80-column terminal) and a topic screen
with a live tail. It polls the admin API once per `refresh_interval` (1 s by default) in a worker,
never more than one poll in flight, and asks only for what the visible tab shows (status and
storage always: the rates need every sample; log lines incrementally, after the last one seen), so
a slow SSH link carries a few small requests a second. Errors become notifications; losing the
appliance shows once, and again when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from importlib import resources
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane

from appliance.admin.client import AdminAPIError, AdminUnavailable, AsyncAdminClient
from appliance.admin.models import UplinkStatus, human_duration_ms
from tui.clients import ClientsPane
from tui.commands import OperatorCommands
from tui.cost import CostPane
from tui.dialogs import (
    ConfirmDialog,
    CreateTopicDialog,
    NewTopic,
    Projection,
    ProjectionDialog,
    RetentionDialog,
)
from tui.logs import LogsPane
from tui.panes import GroupsPane, OverviewPane, Rates, TopicsPane
from tui.security import SecurityPane
from tui.source import AdminSource
from tui.tail import TopicScreen
from tui.uplink import UplinkPane

log = logging.getLogger("millstream.tui")

TAB_ACTIONS = {"create_topic": "topics", "alter_retention": "topics", "delete_topic": "topics",
               "open_topic": "topics", "toggle_follow_logs": "logs", "cost_projection": "cost"}


def load_css() -> str:
    # Through importlib.resources, so the stylesheet is found inside the zipapp too.
    return resources.files("tui").joinpath("millstream.tcss").read_text(encoding="utf-8")


class MillstreamApp(App[None]):
    TITLE = "Millstream"
    CSS = load_css()
    COMMANDS = App.COMMANDS | {OperatorCommands}
    # The tab keys show in the tab labels ("2 Topics"), so the footer keeps its room for what
    # the visible tab can do; the tab bar fits 80 columns.
    BINDINGS = [
        Binding("1", "show_tab('overview')", "Overview", show=False),
        Binding("2", "show_tab('topics')", "Topics", show=False),
        Binding("3", "show_tab('groups')", "Groups", show=False),
        Binding("4", "show_tab('clients')", "Clients", show=False),
        Binding("5", "show_tab('uplink')", "Uplink", show=False),
        Binding("6", "show_tab('security')", "Security", show=False),
        Binding("7", "show_tab('logs')", "Logs", show=False),
        Binding("8", "show_tab('cost')", "Cost", show=False),
        Binding("t", "open_topic", "Tail"),
        Binding("c", "create_topic", "Create"),
        Binding("r", "alter_retention", "Retention"),
        Binding("d", "delete_topic", "Delete"),
        Binding("p", "pause_uplink", "Pause uplink"),
        Binding("u", "resume_uplink", "Resume uplink"),
        Binding("f", "toggle_follow_logs", "Follow"),
        Binding("e", "cost_projection", "Projection"),
        Binding("f5", "refresh_now", "Refresh", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: AdminSource, *, refresh_interval: float = 1.0, handle_signals: bool = False) -> None:
        super().__init__()
        self.source = source
        self.refresh_interval = refresh_interval
        self.handle_signals = handle_signals
        self.rates = Rates()
        self.connected: bool | None = None  # None until the first poll answers or fails
        self.uplink_status: UplinkStatus | None = None
        self.projection: Projection | None = None  # the Cost tab's what-if, None: as measured
        self._polling = False

    # --- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with TabbedContent(initial="overview", id="tabs"):
            with TabPane("1 Overview", id="overview"):
                yield OverviewPane()
            with TabPane("2 Topics", id="topics"):
                yield TopicsPane()
            with TabPane("3 Groups", id="groups"):
                yield GroupsPane()
            with TabPane("4 Clients", id="clients"):
                yield ClientsPane()
            with TabPane("5 Uplink", id="uplink"):
                yield UplinkPane()
            with TabPane("6 Security", id="security"):
                yield SecurityPane()
            with TabPane("7 Logs", id="logs"):
                yield LogsPane()
            with TabPane("8 Cost", id="cost"):
                yield CostPane()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.source.url
        if self.handle_signals:
            # SIGTERM/SIGHUP: leave through App.exit so the terminal is restored.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.exit)
        self.set_interval(self.refresh_interval, self.poll)
        self.poll()

    @property
    def tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in TAB_ACTIONS:
            return self.tab == TAB_ACTIONS[action]  # hidden from the footer elsewhere
        if action in ("pause_uplink", "resume_uplink"):
            u = self.uplink_status
            if self.tab != "uplink" or u is None or not u.enabled:
                return False
            return u.paused if action == "resume_uplink" else not u.paused
        return True

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_changed(self) -> None:
        self.refresh_bindings()
        # Keyboard-first: the arrow keys move in the tab's main table straight away.
        main_table = {"topics": "#topics-table", "groups": "#groups-table", "clients": "#mqtt-table",
                      "uplink": "#uplink-table", "logs": "#log-lines", "cost": "CostPane"}.get(self.tab)
        if main_table:
            self.query_one(main_table).focus()
        elif self.tab == "security":
            self.query_one(SecurityPane).main_table().focus()
        self.poll()  # show the new tab's data now, not up to a second later

    @on(DataTable.RowSelected, "#topics-table")
    def _topic_chosen(self) -> None:
        self.action_open_topic()  # Enter on a topic opens its live tail

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Overview", "Node, health, rates, storage", lambda: self.action_show_tab("overview"))
        yield SystemCommand("Topics", "Topics, partitions, offsets, configs", lambda: self.action_show_tab("topics"))
        yield SystemCommand("Groups", "Consumer groups and lag", lambda: self.action_show_tab("groups"))
        yield SystemCommand("Clients", "MQTT sessions and Kafka connections", lambda: self.action_show_tab("clients"))
        yield SystemCommand("Uplink", "Link state and backlog per topic", lambda: self.action_show_tab("uplink"))
        yield SystemCommand("Security", "Zones and conduits, denials, certificates",
                            lambda: self.action_show_tab("security"))
        yield SystemCommand("Logs", "Recent log lines of the appliance", lambda: self.action_show_tab("logs"))
        yield SystemCommand("Cost", "Inventory findings; monthly cost, broker-attached vs object storage",
                            lambda: self.action_show_tab("cost"))
        yield SystemCommand("Create topic", "Create a topic", self.action_create_topic)
        yield SystemCommand("Tail topic", "Live records of the selected topic; replay from an offset or time",
                            self._palette_tail)
        yield SystemCommand("Follow logs", "Start or stop following the log", self._palette_follow)
        # The operator actions (certificates, rules, uplink, cost projection): tui/commands.py.

    def run_on_tab(self, tab: str, action: str) -> None:
        """Show `tab`, then run `action` (an app method, or "security.<method>" of the Security pane)
        once a poll has brought the tab's data: the command palette's way in."""
        self.action_show_tab(tab)
        self._run_on_tab(action)

    @work(group="palette", exclusive=True, exit_on_error=False)
    async def _run_on_tab(self, action: str) -> None:
        await self.poll_now()
        owner, _, name = action.rpartition(".")
        target = self.query_one(SecurityPane) if owner == "security" else self
        getattr(target, name)()

    def _palette_tail(self) -> None:
        self.action_show_tab("topics")
        self.call_after_refresh(self.action_open_topic)

    def _palette_follow(self) -> None:
        self.action_show_tab("logs")
        self.action_toggle_follow_logs()

    # --- polling ---------------------------------------------------------------------------------

    def poll(self) -> None:
        if not self.screen_stack:
            return  # the app is closing: a last timer tick may come after its screens are gone
        if isinstance(self.screen, TopicScreen):
            return  # the topic screen polls for itself; the tabs catch up when it closes
        if not self._polling:
            self._polling = True
            self._poll()

    async def poll_now(self) -> None:
        """Fetch and render once, waiting for it (tests, and after an action)."""
        while self._polling:
            await asyncio.sleep(0.01)
        self._polling = True
        await self._fetch()

    @work(group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        await self._fetch()

    async def _fetch(self) -> None:
        try:
            status = await self.source.status()
            storage = await self.source.storage()
            tab = self.tab
            topics = await self.source.topics() if tab == "topics" else None
            groups = await self.source.groups() if tab == "groups" else None
            clients = await self.source.clients() if tab == "clients" else None
            uplink = await self.source.uplink() if tab == "uplink" else None
            security = certs = security_error = None
            if tab == "security":
                try:
                    security = await self.source.security()
                    certs = await self.source.certificates()
                except AdminAPIError as e:
                    if isinstance(e, AdminUnavailable):
                        raise
                    security_error = e.message  # e.g. 409: no security on this node; the rest still shows
            logs_pane = self.query_one(LogsPane)
            logs = await self.source.logs(after=logs_pane.last_seq) if tab == "logs" else None
            cost = (await self._cost(), await self.source.inventory()) if tab == "cost" else None
        except AdminAPIError as e:
            self._set_connected(False, e.message)
            return
        except Exception as e:  # noqa: BLE001 - show it, keep the console alive
            log.exception("poll_failed")
            self.notify(f"{type(e).__name__}: {e}", title="refresh failed", severity="error")
            return
        finally:
            self._polling = False
        self._set_connected(True)
        self.rates.add(status)
        self.query_one(OverviewPane).show(status, storage, self.rates)
        if topics is not None:
            self.query_one(TopicsPane).show(topics)
        if groups is not None:
            self.query_one(GroupsPane).show(groups)
        if clients is not None:
            self.query_one(ClientsPane).show(clients)
        if uplink is not None:
            self._show_uplink(uplink)
        if security is not None:
            self.query_one(SecurityPane).show(security, certs)
        elif security_error is not None:
            self.query_one(SecurityPane).unavailable(security_error)
        if logs is not None:
            logs_pane.add(logs.lines, logs.last_seq)
        if cost is not None:
            self.query_one(CostPane).show(*cost)

    def _cost(self):
        p = self.projection
        if p is None:
            return self.source.cost()
        return self.source.cost(scale=p.scale, retention=p.retention_s)

    def _show_uplink(self, uplink: UplinkStatus) -> None:
        changed = self.uplink_status is None or (self.uplink_status.enabled, self.uplink_status.paused) != (
            uplink.enabled, uplink.paused)
        self.uplink_status = uplink
        self.query_one(UplinkPane).show(uplink)
        if changed:
            self.refresh_bindings()  # pause or resume, whichever applies now

    def _set_connected(self, ok: bool, reason: str = "") -> None:
        if ok and self.connected is False:
            self.notify(f"connected to {self.source.url} again", title="appliance")
        if not ok and self.connected is not False:
            log.warning("admin_unreachable url=%s reason=%s", self.source.url, reason)
            self.notify(reason, title="appliance unreachable", severity="error", timeout=8)
        self.connected = ok
        self.sub_title = self.source.url if ok else f"{self.source.url} (unreachable)"

    # --- actions ---------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_refresh_now(self) -> None:
        self.poll()

    def action_open_topic(self) -> None:
        topic = self.query_one(TopicsPane).selected
        if topic is None:
            self.notify("select a topic first", severity="warning")
            return
        self.push_screen(TopicScreen(self.source, topic, refresh_interval=self.refresh_interval))

    def action_toggle_follow_logs(self) -> None:
        self.query_one(LogsPane).toggle_follow()

    def action_pause_uplink(self) -> None:
        self._confirm_uplink(pause=True)

    def action_resume_uplink(self) -> None:
        self._confirm_uplink(pause=False)

    def _confirm_uplink(self, *, pause: bool) -> None:
        u = self.uplink_status
        if u is None or not u.enabled:
            self.notify("the uplink is not enabled on this node", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._uplink_control(pause)

        if pause:
            question = (f"Pause the uplink to {', '.join(u.bootstrap) or 'the cloud'}?\n"
                        f"Records keep arriving and are kept here; the backlog ({u.backlog_records} records now) "
                        "grows until you resume.")
            dialog = ConfirmDialog(question, confirm_label="Pause", danger=True)
        else:
            question = f"Resume the uplink? {u.backlog_records} backlogged record(s) will be forwarded."
            dialog = ConfirmDialog(question, confirm_label="Resume")
        self.push_screen(dialog, confirmed)

    @work(group="actions", exit_on_error=False)
    async def _uplink_control(self, pause: bool) -> None:
        call = self.source.pause_uplink() if pause else self.source.resume_uplink()
        if await self._do("pause the uplink" if pause else "resume the uplink", call):
            self.notify("uplink paused: forwarding stopped" if pause else "uplink resumed", title="uplink")

    def action_cost_projection(self) -> None:
        def chosen(p: Projection | None) -> None:
            if p is not None:
                self._project_cost(p)

        self.push_screen(ProjectionDialog(self.projection), chosen)

    @work(group="actions", exit_on_error=False)
    async def _project_cost(self, p: Projection) -> None:
        # Asked once here, so a projection the appliance refuses is a notification and the tab
        # keeps what it showed; the polls then ask for the projection that worked.
        previous, self.projection = self.projection, (None if p.is_baseline else p)
        call = self.source.cost(scale=p.scale, retention=p.retention_s)
        if await self._do(f"project the cost {p.label}", call):
            self.notify("the measured workload" if p.is_baseline else f"projected {p.label}", title="cost")
        else:
            self.projection = previous

    def action_create_topic(self) -> None:
        def created(result: NewTopic | None) -> None:
            if result is not None:
                self._create_topic(result)

        self.push_screen(CreateTopicDialog(), created)

    @work(group="actions", exit_on_error=False)
    async def _create_topic(self, t: NewTopic) -> None:
        configs = {} if t.retention_ms is None else {"retention.ms": str(t.retention_ms)}
        if await self._do(f"create topic {t.name}", self.source.create_topic(t.name, t.partitions, configs)):
            self.notify(f"created topic {t.name} ({t.partitions} partitions)", title="topics")

    def action_alter_retention(self) -> None:
        topic = self.query_one(TopicsPane).selected
        if topic is None:
            self.notify("select a topic first", severity="warning")
            return

        def chosen(ms: int | None) -> None:
            if ms is not None:
                self._alter_retention(topic.name, ms)

        self.push_screen(RetentionDialog(topic.name, topic.configs.get("retention.ms", "")), chosen)

    @work(group="actions", exit_on_error=False)
    async def _alter_retention(self, name: str, ms: int) -> None:
        if await self._do(f"alter {name}", self.source.alter_topic(name, {"retention.ms": str(ms)})):
            self.notify(f"retention of {name} is now {human_duration_ms(ms)}", title="topics")

    def action_delete_topic(self) -> None:
        topic = self.query_one(TopicsPane).selected
        if topic is None:
            self.notify("select a topic first", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete_topic(topic.name)

        question = (f"Delete topic [b]{topic.name}[/b] with {len(topic.partitions)} partition(s) and "
                    f"{topic.records} record(s)?\nConsumers lose it at once; this cannot be undone.")
        self.push_screen(ConfirmDialog(question, confirm_label="Delete", danger=True), confirmed)

    @work(group="actions", exit_on_error=False)
    async def _delete_topic(self, name: str) -> None:
        if await self._do(f"delete {name}", self.source.delete_topic(name)):
            self.notify(f"deleted topic {name}", title="topics")

    async def _do(self, what: str, call) -> bool:
        ok, _ = await self.attempt(what, call)
        return ok

    async def attempt(self, what: str, call) -> tuple[bool, Any]:
        """Await an admin call; (True, its result) and a fresh poll, or (False, None) after a
        notification saying why (never a traceback)."""
        try:
            result = await call
        except AdminAPIError as e:
            self.notify(e.message, title=f"could not {what}", severity="error", timeout=8)
            return False, None
        except Exception as e:  # noqa: BLE001 - a notification, never a traceback
            log.exception("action_failed what=%s", what)
            self.notify(f"{type(e).__name__}: {e}", title=f"could not {what}", severity="error", timeout=8)
            return False, None
        log.info("action_done what=%s", what)
        await self.poll_now()
        return True, result

    async def action_quit(self) -> None:
        self.exit()

    async def on_unmount(self) -> None:
        try:
            await self.source.close()
        except Exception:  # noqa: BLE001 - closing a connection that is already gone
            pass


def default_log_file() -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "millstream" / "tui.log"


def configure_logging(path: Path) -> None:
    """While the console owns the terminal, logs go to a file (nothing may write to stderr)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)


def make_console(url: str, *, handle_signals: bool = False) -> MillstreamApp:
    """The console for the admin API at `url` (also used by `millstream run --tui`)."""
    return MillstreamApp(AsyncAdminClient(url, timeout=3.0), handle_signals=handle_signals)


def main(url: str | None = None, *, log_file: str | None = None) -> int:
    path = Path(log_file) if log_file else default_log_file()
    configure_logging(path)
    try:
        source = AsyncAdminClient(url or "http://127.0.0.1:9644", timeout=3.0)
    except ValueError as e:
        print(f"millstream tui: {e}")
        return 2
    log.info("tui_start url=%s", source.url)
    MillstreamApp(source, handle_signals=True).run()
    log.info("tui_stop")
    return 0
