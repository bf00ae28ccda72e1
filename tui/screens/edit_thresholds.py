"""Modal: audio duration thresholds for one instance, a selection, or the whole fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, Switch

from fila.models import AudioFilter
from tui.client import ControlPlaneError, Unreachable
from tui.rules import THRESHOLD_RULES, threshold_errors

if TYPE_CHECKING:
    from tui.app import FilaApp


def scope(instances: list[str] | None) -> str:
    if instances is None:
        return "every instance"
    if len(instances) == 1:
        return instances[0]
    more = "…" if len(instances) > 3 else ""
    return f"{len(instances)} instances ({', '.join(instances[:3])}{more})"


class EditThresholds(ModalScreen[str | None]):
    """Checks the contract's rules as you type; sends nothing until they hold."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, instances: list[str] | None, current: AudioFilter) -> None:
        super().__init__(classes="modal")
        self.instances = instances
        self.current = current
        self.sent = 0
        """Requests sent (tests check that invalid input sends none)."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"[b]Audio thresholds[/b] — {scope(self.instances)}", id="title")
            with Grid(classes="form"):
                yield Label("min seconds")
                yield Input(str(self.current.minDurationSeconds), id="min", type="integer")
                yield Label("max seconds")
                yield Input(str(self.current.maxDurationSeconds), id="max", type="integer")
                yield Label("enabled")
                yield Switch(self.current.enabled, id="enabled")
            yield Label(THRESHOLD_RULES, id="rule", classes="rule")
            yield Static("", id="errors", classes="errors")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#min", Input).focus()

    def errors(self) -> list[str]:
        return threshold_errors(
            self.query_one("#min", Input).value, self.query_one("#max", Input).value
        )

    def _show(self, problems: list[str]) -> None:
        box = self.query_one("#errors", Static)
        box.update(Text("\n".join(f"✗ {p}" for p in problems)))
        box.set_class(bool(problems), "visible")

    @on(Input.Changed)
    def _changed(self) -> None:
        self._show(self.errors())

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        problems = self.errors()
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
        rule = AudioFilter(
            minDurationSeconds=int(self.query_one("#min", Input).value),
            maxDurationSeconds=int(self.query_one("#max", Input).value),
            enabled=self.query_one("#enabled", Switch).value,
        )
        self.sent += 1
        try:
            if self.instances is not None and len(self.instances) == 1:
                await client.set_audio_filter(self.instances[0], rule)
                count = 1
            else:
                count = await client.set_audio_filters(self.instances, rule)
        except (ControlPlaneError, Unreachable) as exc:
            self._show([f"server refused: {exc}"])
            return
        self.dismiss(
            f"{rule.minDurationSeconds}–{rule.maxDurationSeconds}s "
            f"{'on' if rule.enabled else 'off'} applied to {count} instance(s)"
        )
