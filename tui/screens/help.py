"""`?`: every key and `:`-command on one page."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("1…8", "overview, instances, feedback, cleanup, webhooks, dead letters, workers, history"),
    (":", "a screen name (prefix is enough), pause|resume|drain [ingest|delivery], quit"),
    ("ctrl+p", "command palette"),
    ("l / x", "edit global rate limit / emergency filter (overview)"),
    ("/", "filter instances as you type (instances; Esc back to the table)"),
    ("space / A", "select the instance / every shown instance"),
    ("e / E", "edit thresholds of the selection (or cursor row) / of every instance"),
    ("h", "configuration history of the instance under the cursor (instances)"),
    ("s / S", "sort by the next column / reverse (or click a header)"),
    ("c", "cancel the feedback session (feedback)"),
    ("r", "run cleanup now (cleanup); replay (dead letters)"),
    ("p / u / d", "pause / resume / drain workers (workers)"),
    ("q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, screens: dict[str, Any]) -> None:
        super().__init__(classes="modal")
        self.screens = screens

    def compose(self) -> ComposeResult:
        table = Table("key", "does", title="Fila keys", expand=True, show_edge=False)
        for key, text in KEYS:
            table.add_row(key, text)
        with VerticalScroll(classes="dialog"):
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
