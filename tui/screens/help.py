"""`?`: every key and `:`-command on one page."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
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
    ("[ / ]", "previous / next page of instances (also PgUp / PgDn)"),
    ("space / A", "select the instance / every instance on the page"),
    ("e / E", "edit thresholds of the selection (or cursor row) / of every instance"),
    ("h", "configuration history of the instance under the cursor (instances)"),
    ("w", "weight of the instance under the cursor: fair share and queue priority"),
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
        table = Table(title="Fila keys", expand=True, box=None, padding=(0, 1))
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("does", ratio=1, overflow="fold")
        for key, text in KEYS:
            table.add_row(Text(key), Text(text))  # Text: "[ingest|delivery]" is not markup
        with VerticalScroll(classes="dialog help-dialog"):
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
