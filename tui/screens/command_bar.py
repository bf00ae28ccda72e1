"""k9s-style `:` prompt: a screen name (or prefix) or an action, Enter to run."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Input


class CommandBar(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, screens: list[str]) -> None:
        super().__init__(classes="command-bar")
        self.screens = screens

    def compose(self) -> ComposeResult:
        hint = " ".join(self.screens) + " pause resume drain ratelimit emergency quit"
        yield Input(placeholder=hint, id="command")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _run(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
