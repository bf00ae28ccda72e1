"""Rebuild a small DataTable from fresh rows with the cursor on the same row key and the view
where it was: a row-number cursor would slide onto another session or worker as rows come and go.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.widgets import DataTable


def refill(table: DataTable[Any], rows: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
    """`rows` are (key, cells); the cursor stays on its key, or on its row number if it left."""
    under: str | None = None
    if table.row_count:
        under = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
    at, scroll_y = table.cursor_row, table.scroll_y
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if not table.row_count:
        return
    keys = {str(k.value) for k in table.rows}
    row = table.get_row_index(under) if under in keys else min(at, table.row_count - 1)
    table.move_cursor(row=row, scroll=False)
    table.scroll_to(y=scroll_y, animate=False, immediate=True)
