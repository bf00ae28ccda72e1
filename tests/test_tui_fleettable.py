"""The instances table's fast paths must paint exactly what the stock DataTable paints.

`FleetTable` renders `Cell`s directly and batches updates; both lean on DataTable internals,
so these compare it line by line with a stock DataTable holding the same cells.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.strip import Strip
from textual.widgets import DataTable

from tui.screens.instances import cell
from tui.widgets.cell import Cell
from tui.widgets.fleettable import FleetTable

ROWS = 30
KEYS = ["sel", "instance", "received", "tokens", "enabled", "lastSeen"]


def texts(i: int, tick: int) -> list[str]:
    return ["●" if i % 4 == 0 else "", f"inst-{i:03d}", f"{i * 37 + tick:,}", "–", "yes", "9s"]


class Pair(App[None]):
    """The two tables side by side, same size, same data, same cursor."""

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield FleetTable(id="fast", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="stock", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for table in self.tables():
            for key in KEYS:
                table.add_column(key, key=key)
            for i in range(ROWS):
                row = (cell(k, t) for k, t in zip(KEYS, texts(i, 0), strict=True))
                table.add_row(*row, key=f"r{i}")

    def tables(self) -> list[DataTable[Cell]]:
        return [self.query_one("#fast", FleetTable), self.query_one("#stock", DataTable)]


def lines(table: DataTable[Cell]) -> list[Strip]:
    return [table.render_line(y) for y in range(table.size.height)]


async def test_fast_rendering_and_batched_updates_match_the_stock_table() -> None:
    app = Pair()
    async with app.run_test(size=(120, 20)) as pilot:
        await pilot.pause()
        fast, stock = app.tables()
        assert isinstance(fast, FleetTable)
        app.set_focus(None)  # focus changes the cursor colours: keep both alike
        await pilot.pause()
        assert lines(fast) == lines(stock)
        # data cells took the direct path (the stock one caches every rendered cell)
        assert len(fast._cell_render_cache) < len(stock._cell_render_cache)

        for table in (fast, stock):
            table.move_cursor(row=3)
        await pilot.pause()
        assert lines(fast) == lines(stock)

        changes = [(f"r{i}", "received", cell("received", f"{i * 37 + 5:,}")) for i in range(ROWS)]
        fast.set_cells(changes)
        for row, column, value in changes:
            stock.update_cell(row, column, value)
        await pilot.pause()
        assert fast.get_row("r7") == stock.get_row("r7")
        assert lines(fast) == lines(stock)
