"""Fleet-wide configuration history: who changed what, when, and through which route."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from fila.history import ConfigChange
from tui.fleetdata import FleetData
from tui.screens.base import FilaScreen
from tui.widgets.historytable import HistoryTable


def detail(change: ConfigChange) -> str:
    """The whole old and new values of one change (secrets already masked by the server)."""
    old = json.dumps(change.old, ensure_ascii=False, sort_keys=True)
    new = json.dumps(change.new, ensure_ascii=False, sort_keys=True)
    return (
        f"{change.at} {change.route} by {change.caller} from {change.address}\nold {old}\nnew {new}"
    )


class HistoryScreen(FilaScreen):
    FEEDS = ("changes",)

    def __init__(self) -> None:
        super().__init__()
        self.changes: dict[str, ConfigChange] = {}

    def compose_body(self) -> ComposeResult:
        yield Static(id="history-status")
        yield HistoryTable(id="history")
        yield Static(id="history-detail")

    def refresh_from(self, data: FleetData) -> None:
        status = self.query_one("#history-status", Static)
        error = data.errors.get("changes")
        if data.changes is None:
            status.update(Text(error or "waiting for the control plane…"))
            return
        changes = data.changes.changes
        self.changes = {str(c.id): c for c in changes}
        self.query_one("#history", HistoryTable).show(changes)
        status.update(
            f"[b]{len(changes)}[/b] configuration changes, newest first"
            + (f" · [b red]not refreshed: {escape(error)}[/b red]" if error else "")
        )
        self._detail()

    @on(DataTable.RowHighlighted, "#history")
    def _highlighted(self) -> None:
        self._detail()

    def _detail(self) -> None:
        table = self.query_one("#history", HistoryTable)
        shown = self.query_one("#history-detail", Static)
        if not table.row_count:
            shown.update("")
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        change = self.changes.get(key)
        shown.update(Text(detail(change)) if change else "")
