"""The operator actions in Textual's command palette (ctrl+p): certificates, rules, the uplink and
the cost projection, reachable from any tab.

Each command switches to the tab that owns the action, waits for one poll so the tab holds fresh
data (the uplink's state, the zones, the certificates), then runs the same action as the tab's key:
the confirmation dialogs and notifications are the ones the keys give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import MillstreamApp

# (name, help, tab, action): the action is a method name on the app, or "security.<method>" on the
# Security tab's pane.
COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("Issue certificate", "Issue a client certificate from the site CA (Security tab, i)", "security",
     "security.action_issue"),
    ("Revoke certificate", "Revoke the highlighted certificate, after confirmation (Security tab, x)", "security",
     "security.action_revoke"),
    ("Reload rules", "Reload zones and conduits from the rules file, after confirmation (Security tab, r)",
     "security", "security.action_reload_rules"),
    ("Pause uplink", "Stop forwarding to the cloud, after confirmation (Uplink tab, p)", "uplink",
     "action_pause_uplink"),
    ("Resume uplink", "Forward the backlog to the cloud again, after confirmation (Uplink tab, u)", "uplink",
     "action_resume_uplink"),
    ("Cost projection", "Price the workload scaled, or with another retention (Cost tab, e)", "cost",
     "action_cost_projection"),
)


class OperatorCommands(Provider):
    @property
    def console(self) -> MillstreamApp:
        return self.app  # type: ignore[return-value]

    def _run(self, tab: str, action: str) -> Callable[[], None]:
        def run() -> None:
            self.console.run_on_tab(tab, action)

        return run

    async def discover(self) -> Hits:
        for name, help_text, tab, action in COMMANDS:
            yield DiscoveryHit(name, self._run(tab, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, tab, action in COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), self._run(tab, action), help=help_text)
