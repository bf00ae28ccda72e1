"""Modal: the emergency filter that overrides every instance's thresholds while enabled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.widgets import Input, Label, Switch

from fila.audiofilter import EmergencyFilter
from tui.rules import THRESHOLD_RULES, threshold_errors
from tui.screens.form import FormModal

if TYPE_CHECKING:
    from tui.client import FilaClient


class EditEmergency(FormModal):
    rules = THRESHOLD_RULES

    def __init__(self, current: EmergencyFilter | None) -> None:
        super().__init__()
        self.current = current or EmergencyFilter()

    def title_markup(self) -> str:
        return "[b]Emergency filter[/b] — overrides every instance while on"

    def fields(self) -> ComposeResult:
        yield Label("enabled")
        yield Switch(self.current.enabled, id="enabled")
        yield Label("min seconds")
        yield Input(str(self.current.minDurationSeconds), id="min", type="integer")
        yield Label("max seconds")
        yield Input(str(self.current.maxDurationSeconds), id="max", type="integer")
        yield Label("reason")
        yield Input(self.current.reason, id="reason")

    def errors(self) -> list[str]:
        return threshold_errors(
            self.query_one("#min", Input).value, self.query_one("#max", Input).value
        )

    async def submit(self, client: FilaClient) -> str:
        rule = EmergencyFilter(
            enabled=self.query_one("#enabled", Switch).value,
            minDurationSeconds=int(self.query_one("#min", Input).value),
            maxDurationSeconds=int(self.query_one("#max", Input).value),
            reason=self.query_one("#reason", Input).value,
        )
        saved = await client.set_emergency(rule)
        state = "ON" if saved.enabled else "off"
        return f"{state}: {saved.minDurationSeconds}–{saved.maxDurationSeconds}s"
