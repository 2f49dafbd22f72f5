"""Modal dialogs: confirm, create topic, alter retention, cost projection. Each returns its result via dismiss()."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from appliance.admin.models import human_duration_ms
from tui.format import parse_retention


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; y/Enter confirms, n/Escape cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, *, confirm_label: str = "Yes", danger: bool = False) -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.confirm_label} (y)", id="yes", variant="error" if self.danger else "primary")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


@dataclass(frozen=True)
class NewTopic:
    name: str
    partitions: int
    retention_ms: int | None  # None: the broker default


class CreateTopicDialog(ModalScreen[NewTopic | None]):
    """Name, partitions, retention; the summary line says exactly what Create will do."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Create topic", classes="title")
            yield Input(placeholder="name, e.g. plant1.line3.telemetry", id="name")
            yield Input(value="1", placeholder="partitions", id="partitions", type="integer")
            yield Input(placeholder="retention: 7d, 12h, forever (empty: default)", id="retention")
            yield Static("", id="summary", classes="summary")
            with Horizontal(classes="buttons"):
                yield Button("Create", id="create", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self._update_summary()

    def _read(self) -> NewTopic:
        name = self.query_one("#name", Input).value.strip()
        if not name:
            raise ValueError("give the topic a name")
        try:
            partitions = int(self.query_one("#partitions", Input).value or "1")
        except ValueError:
            raise ValueError("partitions must be a whole number") from None
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        retention_text = self.query_one("#retention", Input).value.strip()
        retention = parse_retention(retention_text) if retention_text else None
        return NewTopic(name, partitions, retention)

    @on(Input.Changed)
    def _update_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        try:
            t = self._read()
        except ValueError as e:
            summary.update(str(e))
            return
        retention = "default retention" if t.retention_ms is None else f"retention {human_duration_ms(t.retention_ms)}"
        summary.update(f"Create {t.name!r} with {t.partitions} partition(s), {retention}.")

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def _create(self) -> None:
        try:
            t = self._read()
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        self.dismiss(t)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class RetentionDialog(ModalScreen[int | None]):
    """New retention.ms for one topic, shown with the current value."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, topic: str, current_ms: str) -> None:
        super().__init__()
        self.topic = topic
        self.current_ms = current_ms

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Retention of {self.topic}", classes="title")
            yield Static(f"now: {human_duration_ms(self.current_ms)} ({self.current_ms} ms)")
            yield Input(value=human_duration_ms(self.current_ms), id="retention",
                        placeholder="7d, 12h, 30m, 3600000 (ms) or forever")
            yield Static("", id="summary", classes="summary")
            with Horizontal(classes="buttons"):
                yield Button("Apply", id="apply", variant="warning")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._update_summary()

    @on(Input.Changed)
    def _update_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        try:
            ms = parse_retention(self.query_one(Input).value)
        except ValueError as e:
            summary.update(str(e))
            return
        summary.update(f"Set retention.ms={ms} ({human_duration_ms(ms)}): older data becomes eligible for deletion.")

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        try:
            ms = parse_retention(self.query_one(Input).value)
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        self.dismiss(ms)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class Projection:
    """The Cost tab's what-if: the measured workload scaled, and/or kept for a different retention."""

    scale: float | None = None  # None: as measured
    retention_s: float | None = None  # None: each topic's own retention

    @property
    def is_baseline(self) -> bool:
        return self.scale is None and self.retention_s is None

    @property
    def label(self) -> str:
        parts = ([f"x{self.scale:g}"] if self.scale is not None else []) + (
            [f"retention {human_duration_ms(round(self.retention_s * 1000))}"] if self.retention_s is not None else [])
        return ", ".join(parts) or "as measured"


def parse_projection(scale_text: str, retention_text: str) -> Projection:
    """Both fields optional (empty: as measured). ValueError says what is wrong, in the operator's terms."""
    scale = retention = None
    if scale_text.strip():
        try:
            scale = float(scale_text.strip().lstrip("xX"))
        except ValueError:
            raise ValueError(f"scale {scale_text.strip()!r}: give a number such as 4 or 0.5") from None
        if not 0 < scale < float("inf"):
            raise ValueError(f"scale must be a number > 0, got {scale_text.strip()!r}")
    if retention_text.strip():
        try:
            ms = parse_retention(retention_text)
        except ValueError:
            ms = -2
        if ms <= 0:  # "forever" has no price: the model needs a window
            raise ValueError(f"retention {retention_text.strip()!r}: use e.g. 14d, 36h or 90m")
        retention = ms / 1000
    return Projection(scale, retention)


class ProjectionDialog(ModalScreen[Projection | None]):
    """Scale factor and retention override for the cost comparison. Apply projects, Clear goes back
    to the measured workload (an empty Projection), Escape changes nothing (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: Projection | None = None) -> None:
        super().__init__()
        self.current = current or Projection()

    def compose(self) -> ComposeResult:
        c = self.current
        with Vertical(classes="dialog"):
            yield Label("Cost projection", classes="title")
            yield Input(value="" if c.scale is None else f"{c.scale:g}", id="scale",
                        placeholder="scale the measured traffic, e.g. 4 (empty: as measured)")
            yield Input(value="" if c.retention_s is None else human_duration_ms(round(c.retention_s * 1000)), id="retention",
                        placeholder="keep every topic for, e.g. 14d (empty: each topic's own)")
            yield Static("", id="summary", classes="summary")
            with Horizontal(classes="buttons"):
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Clear", id="clear")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#scale", Input).focus()
        self._update_summary()

    def _read(self) -> Projection:
        return parse_projection(self.query_one("#scale", Input).value, self.query_one("#retention", Input).value)

    @on(Input.Changed)
    def _update_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        try:
            p = self._read()
        except ValueError as e:
            summary.update(str(e))
            return
        summary.update("Price the workload as measured." if p.is_baseline else
                       f"Price the measured workload {p.label}; the measured totals stay alongside.")

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        try:
            p = self._read()
        except ValueError as e:
            self.notify(str(e), title="projection", severity="error")
            return
        self.dismiss(p)

    @on(Button.Pressed, "#clear")
    def _clear(self) -> None:
        self.dismiss(Projection())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
