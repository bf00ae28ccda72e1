"""Modal: the emergency filter that overrides every instance's thresholds while enabled."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, Switch

from fila.models import EmergencyFilter
from tui.client import ControlPlaneError, Unreachable
from tui.rules import THRESHOLD_RULES, threshold_errors

if TYPE_CHECKING:
    from tui.app import FilaApp


class EditEmergency(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, current: EmergencyFilter | None) -> None:
        super().__init__(classes="modal")
        self.current = current or EmergencyFilter()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("[b]Emergency filter[/b] — overrides every instance while on")
            with Grid(classes="form"):
                yield Label("enabled")
                yield Switch(self.current.enabled, id="enabled")
                yield Label("min seconds")
                yield Input(str(self.current.minDurationSeconds), id="min", type="integer")
                yield Label("max seconds")
                yield Input(str(self.current.maxDurationSeconds), id="max", type="integer")
                yield Label("reason")
                yield Input(self.current.reason, id="reason")
            yield Label(THRESHOLD_RULES, classes="rule")
            yield Static("", id="errors", classes="errors")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def _errors(self) -> list[str]:
        return threshold_errors(
            self.query_one("#min", Input).value, self.query_one("#max", Input).value
        )

    def _show(self, problems: list[str]) -> None:
        box = self.query_one("#errors", Static)
        box.update(Text("\n".join(f"✗ {p}" for p in problems)))
        box.set_class(bool(problems), "visible")

    @on(Input.Changed)
    def _changed(self) -> None:
        self._show(self._errors())

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        problems = self._errors()
        self._show(problems)
        if not problems:
            self._send()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True, group="save")
    async def _send(self) -> None:
        client = cast("FilaApp", self.app).client
        if client is None:
            self._show(["read-only: no control plane (injected data)"])
            return
        rule = EmergencyFilter(
            enabled=self.query_one("#enabled", Switch).value,
            minDurationSeconds=int(self.query_one("#min", Input).value),
            maxDurationSeconds=int(self.query_one("#max", Input).value),
            reason=self.query_one("#reason", Input).value,
        )
        try:
            saved = await client.set_emergency(rule)
        except (ControlPlaneError, Unreachable) as exc:
            self._show([f"server refused: {exc}"])
            return
        state = "ON" if saved.enabled else "off"
        self.dismiss(f"{state}: {saved.minDurationSeconds}–{saved.maxDurationSeconds}s")
