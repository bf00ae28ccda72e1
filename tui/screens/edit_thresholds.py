"""Modal: audio duration thresholds for one instance, a selection, or the whole fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.widgets import Input, Label, Switch

from fila.audiofilter import AudioFilter
from tui.rules import THRESHOLD_RULES, threshold_errors
from tui.screens.form import FormModal

if TYPE_CHECKING:
    from tui.client import FilaClient


def scope(instances: list[str] | None) -> str:
    if instances is None:
        return "every instance"
    if len(instances) == 1:
        return instances[0]
    more = "…" if len(instances) > 3 else ""
    return f"{len(instances)} instances ({', '.join(instances[:3])}{more})"


class EditThresholds(FormModal):
    rules = THRESHOLD_RULES
    title_id = "title"
    rule_id = "rule"

    def __init__(self, instances: list[str] | None, current: AudioFilter) -> None:
        super().__init__()
        self.instances = instances
        self.current = current
        self.sent = 0
        """Requests sent (tests check that invalid input sends none)."""

    def title_markup(self) -> str:
        return f"[b]Audio thresholds[/b] — {scope(self.instances)}"

    def fields(self) -> ComposeResult:
        yield Label("min seconds")
        yield Input(str(self.current.minDurationSeconds), id="min", type="integer")
        yield Label("max seconds")
        yield Input(str(self.current.maxDurationSeconds), id="max", type="integer")
        yield Label("enabled")
        yield Switch(self.current.enabled, id="enabled")

    def on_mount(self) -> None:
        self.query_one("#min", Input).focus()

    def errors(self) -> list[str]:
        return threshold_errors(
            self.query_one("#min", Input).value, self.query_one("#max", Input).value
        )

    async def submit(self, client: FilaClient) -> str:
        rule = AudioFilter(
            minDurationSeconds=int(self.query_one("#min", Input).value),
            maxDurationSeconds=int(self.query_one("#max", Input).value),
            enabled=self.query_one("#enabled", Switch).value,
        )
        self.sent += 1
        if self.instances is not None and len(self.instances) == 1:
            await client.set_audio_filter(self.instances[0], rule)
            count = 1
        else:
            count = await client.set_audio_filters(self.instances, rule)
        return (
            f"{rule.minDurationSeconds}–{rule.maxDurationSeconds}s "
            f"{'on' if rule.enabled else 'off'} applied to {count} instance(s)"
        )
