"""All instances in one table, updated in place each second; sort, filter, select, edit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Input, Static

from fila.views import InstanceRow
from tui.fleetdata import FleetData
from tui.screens.base import FilaScreen
from tui.widgets.cell import Cell
from tui.widgets.fleettable import FleetTable


def age(seconds: float | None, now: float) -> str:
    """`5s`, `3m`, `2h`, `4d` since the last event, `never` when none."""
    if seconds is None:
        return "never"
    delta = max(0.0, now - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit}"
    return f"{int(delta)}s"


def share(row: InstanceRow) -> str:
    return f"{row.tokens:.0f}/{row.tokenCapacity}" if row.tokenCapacity else "–"


# key, label, cell text, sort key (numbers sort as numbers)
Column = tuple[str, str, Callable[[InstanceRow, float], str], Callable[[InstanceRow], Any]]
COLUMNS: list[Column] = [
    ("sel", " ", lambda r, n: "", lambda r: 0),
    ("instance", "instance", lambda r, n: r.instance, lambda r: r.instance),
    ("received", "recv", lambda r, n: f"{r.received:,}", lambda r: r.received),
    ("processed", "proc", lambda r, n: f"{r.processed:,}", lambda r: r.processed),
    ("tooShort", "short", lambda r, n: f"{r.tooShort:,}", lambda r: r.tooShort),
    ("tooLong", "long", lambda r, n: f"{r.tooLong:,}", lambda r: r.tooLong),
    ("rateLimited", "rated", lambda r, n: f"{r.rateLimited:,}", lambda r: r.rateLimited),
    ("tokens", "tokens", lambda r, n: share(r), lambda r: r.tokens),
    ("weight", "wt", lambda r, n: str(r.weight), lambda r: r.weight),
    ("min", "min", lambda r, n: str(r.minDurationSeconds), lambda r: r.minDurationSeconds),
    ("max", "max", lambda r, n: str(r.maxDurationSeconds), lambda r: r.maxDurationSeconds),
    ("enabled", "on", lambda r, n: "yes" if r.enabled else "no", lambda r: r.enabled),
    ("lastSeen", "seen", lambda r, n: age(r.lastSeen, n), lambda r: -(r.lastSeen or 0)),
]
KEYS = [c[0] for c in COLUMNS]
LEFT = {"sel", "instance", "enabled"}


def cell(key: str, text: str) -> Cell:
    return Cell(text, right=key not in LEFT)


class InstancesScreen(FilaScreen):
    FEEDS = ("instances",)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("space", "toggle_select", "Select"),
        Binding("A", "select_visible", "Select shown"),
        Binding("e", "edit", "Edit thresholds"),
        Binding("E", "edit_all", "Edit all"),
        Binding("h", "history", "History"),
        Binding("w", "weight", "Weight"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, InstanceRow] = {}
        """Latest row of every instance, shown or filtered out."""
        self.shown: dict[str, list[str]] = {}
        """Cell texts currently in the table, per instance (to change only what changed)."""
        self.selected: set[str] = set()
        self.needle = ""
        self.sort_key: str | None = None
        self.sort_reverse = False
        self.now = 0.0
        self.status_text = ""

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter instances (/)", id="filter")
        table = FleetTable(id="instances", cursor_type="row", zebra_stripes=True)
        for key, label, _, _ in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static(id="status")

    @property
    def table(self) -> FleetTable:
        return self.query_one("#instances", FleetTable)

    def on_mount(self) -> None:
        self.table.focus()

    # ------------------------------------------------------------ data

    def refresh_from(self, data: FleetData) -> None:
        view = data.instances
        if view is not None:
            self.apply(view.instances, view.generatedAt)
        self._status(data.errors.get("instances"))

    def apply(self, rows: list[InstanceRow], now: float) -> None:
        """Change the cells that differ, add rows for new instances; never rebuild."""
        table = self.table
        self.now = now
        resort = False
        changes: list[tuple[str, str, Cell]] = []
        rows_before = self.rows
        self.rows = dict(rows_before)
        for row in rows:
            self.rows[row.instance] = row
            if not self._matches(row.instance):
                continue
            before = self.shown.get(row.instance)
            if before is not None and rows_before.get(row.instance) == row:
                texts = [*before[:-1], age(row.lastSeen, now)]  # only the age moves
            else:
                texts = self._texts(row)
            if before is None:
                table.add_row(
                    *(cell(k, t) for k, t in zip(KEYS, texts, strict=True)), key=row.instance
                )
                resort = True
            else:
                for key, old, new in zip(KEYS, before, texts, strict=True):
                    if old != new:
                        changes.append((row.instance, key, cell(key, new)))
                        resort = resort or key == self.sort_key
            self.shown[row.instance] = texts
        table.set_cells(changes)
        if resort and self.sort_key:
            self._sort()

    def _texts(self, row: InstanceRow) -> list[str]:
        texts = [fmt(row, self.now) for _, _, fmt, _ in COLUMNS]
        texts[0] = "●" if row.instance in self.selected else ""
        return texts

    def _matches(self, instance: str) -> bool:
        return self.needle in instance.lower()

    def _status(self, error: str | None) -> None:
        parts = [f"{len(self.shown)}/{len(self.rows)} instances"]
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        if self.sort_key:
            parts.append(f"sorted by {self.sort_key}{' ↓' if self.sort_reverse else ' ↑'}")
        if error:
            parts.append(error)
        text = " · ".join(parts)
        if text != self.status_text:  # an update re-lays out the screen: only on change
            self.status_text = text
            shown = Text(text)
            if error:
                shown.stylize("red", len(text) - len(error))
            self.query_one("#status", Static).update(shown)

    def _rebuild(self) -> None:
        """Only on a new filter: the set of rows itself changes."""
        self.table.clear()
        self.shown.clear()
        self.apply(list(self.rows.values()), self.now)
        self._sort()
        self._status(None)

    def _sort(self) -> None:
        if self.sort_key is None:
            return
        getter = next(c[3] for c in COLUMNS if c[0] == self.sort_key)
        index = KEYS.index("instance")

        def by(values: tuple[Cell, ...]) -> Any:
            name = values[index].plain
            return (getter(self.rows[name]), name)

        # The cursor follows its instance: a re-sort must not slide another one under it.
        under = self.current()
        self.table.sort(key=by, reverse=self.sort_reverse)
        if under is not None and under in self.shown:
            self.table.move_cursor(row=self.table.get_row_index(under), scroll=False)

    # ------------------------------------------------------------ actions

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.needle = event.value.strip().lower()
        self._rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.table.focus()

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        self.sort_reverse = not self.sort_reverse if key == self.sort_key else False
        self.sort_key = key
        self._sort()
        self._status(None)

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.table.focus()

    def action_sort_next(self) -> None:
        """Sort by the next column (header clicks choose one directly)."""
        order = KEYS[1:]
        at = order.index(self.sort_key) + 1 if self.sort_key in order else 0
        self.sort_key = order[at % len(order)]
        self.sort_reverse = False
        self._sort()
        self._status(None)

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._sort()
        self._status(None)

    def current(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(row_key.value)

    def action_toggle_select(self) -> None:
        name = self.current()
        if name is None:
            return
        self.selected.symmetric_difference_update({name})
        mark = "●" if name in self.selected else ""
        self.table.update_cell(name, "sel", cell("sel", mark))
        self.shown[name][0] = mark
        self._status(None)

    def action_select_visible(self) -> None:
        every = set(self.shown)
        self.selected = set() if every <= self.selected else every
        changes = []
        for name, texts in self.shown.items():
            mark = "●" if name in self.selected else ""
            if texts[0] != mark:
                texts[0] = mark
                changes.append((name, "sel", cell("sel", mark)))
        self.table.set_cells(changes)
        self._status(None)

    def targets(self) -> list[str]:
        """Selected instances, else the one under the cursor."""
        if self.selected:
            return sorted(self.selected)
        name = self.current()
        return [name] if name else []

    def action_edit(self) -> None:
        names = self.targets()
        if names:
            self.fila.edit_thresholds(names, self.rows.get(names[0]))

    def action_weight(self) -> None:
        """The weight of the instance under the cursor."""
        name = self.current()
        if name:
            row = self.rows.get(name)
            self.fila.edit_weight(name, row.weight if row else 1)

    def action_history(self) -> None:
        """The configuration history of the instance under the cursor."""
        from tui.screens.instance_history import InstanceHistory

        name = self.current()
        if name:
            self.app.push_screen(InstanceHistory(name))

    def action_edit_all(self) -> None:
        """Starts from the fleet defaults, not from whichever instance happens to be first."""
        self.fila.edit_thresholds(None, None)
