"""A rebuilt sessions/workers table keeps its cursor on the same row key, not the same number."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from tui.widgets.refill import refill


class _Table(App[None]):
    def compose(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(cursor_type="row")
        table.add_columns("id", "state")
        yield table


def _rows(*keys: str) -> list[tuple[str, tuple[str, str]]]:
    return [(k, (k, "active")) for k in keys]


def _under(table: DataTable[Any]) -> str:
    return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)


async def test_the_cursor_follows_its_key_through_a_rebuild() -> None:
    app = _Table()
    async with app.run_test() as pilot:
        table = app.query_one(DataTable)
        refill(table, _rows("s-b", "s-c", "s-d"))
        table.move_cursor(row=1)
        await pilot.pause()
        assert _under(table) == "s-c"
        refill(table, _rows("s-a", "s-b", "s-c", "s-d"))  # a new session sorts before it
        assert _under(table) == "s-c" and table.cursor_row == 2
        refill(table, _rows("s-a", "s-b", "s-d"))  # it finished: the same row number stays
        assert table.cursor_row == 2 and _under(table) == "s-d"
        refill(table, [])
        assert table.row_count == 0
