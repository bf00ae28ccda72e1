"""Modal: one instance's weight (its share under contention and its queue priority), live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.widgets import Input, Label

from tui.rules import WEIGHT_RULES, weight_errors
from tui.screens.form import FormModal

if TYPE_CHECKING:
    from tui.client import FilaClient


class EditWeight(FormModal):
    rules = WEIGHT_RULES

    def __init__(self, instance: str, current: int) -> None:
        super().__init__()
        self.instance = instance
        self.current = current

    def title_markup(self) -> str:
        return f"[b]Weight[/b] — {self.instance}"

    def fields(self) -> ComposeResult:
        yield Label("weight")
        yield Input(str(self.current), id="weight", type="integer")

    def on_mount(self) -> None:
        self.query_one("#weight", Input).focus()

    def errors(self) -> list[str]:
        return weight_errors(self.query_one("#weight", Input).value)

    async def submit(self, client: FilaClient) -> str:
        weight = int(self.query_one("#weight", Input).value)
        saved = await client.set_weight(self.instance, weight)
        return f"{self.instance}: weight {saved.weight}, priority {saved.priority}"
