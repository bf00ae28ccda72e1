"""The fleet table, a page at a time, updated in place each second; sort, filter, select, edit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Input, Static

from fila import fleetquery
from fila.fleetquery import InstancesQuery
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


SORT_FIELDS = {
    "instance": "instance",
    "received": "received",
    "processed": "processed",
    "tooShort": "tooShort",
    "tooLong": "tooLong",
    "rateLimited": "rateLimited",
    "tokens": "tokens",
    "weight": "weight",
    "min": "minDurationSeconds",
    "max": "maxDurationSeconds",
    "enabled": "enabled",
    "lastSeen": "lastSeen",
}
"""Column key → the field the control plane sorts by (`fila.fleetquery.SORTS`)."""
PAGE_DEFAULT = 40
"""Rows asked for before the table knows its height."""


class InstancesScreen(FilaScreen):
    """A page of the fleet: the control plane sorts, filters and slices, this shows the slice.

    Its cost follows what the operator sees (a page of rows a second), not the fleet size;
    the same rule pages locally when the app runs on injected data.
    """

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
        Binding("pagedown,right_square_bracket", "page(1)", "Next page", show=False, priority=True),
        Binding("pageup,left_square_bracket", "page(-1)", "Prev page", show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, InstanceRow] = {}
        """The rows of the page shown."""
        self.shown: dict[str, list[str]] = {}
        """Cell texts currently in the table, per instance (to change only what changed)."""
        self.page_order: list[str] = []
        self.selected: set[str] = set()
        self.needle = ""
        self.sort_key: str | None = None
        self.sort_reverse = False
        self.page_offset = 0
        self.limit = PAGE_DEFAULT
        self.matched = 0
        self.total = 0
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
        self._publish_query()

    def on_resize(self) -> None:
        rows = max(10, self.table.size.height - 1)  # less the header row
        if self.table.size.height and rows != self.limit:
            self.limit = rows
            self._requery()

    # ------------------------------------------------------------ the query

    @property
    def query_now(self) -> InstancesQuery:
        return InstancesQuery(
            sort=SORT_FIELDS.get(self.sort_key or "instance", "instance"),
            order="desc" if self.sort_reverse else "asc",
            q=self.needle,
            offset=self.page_offset,
            limit=self.limit,
        )

    def _publish_query(self) -> None:
        self.fila.data.instancesQuery = self.query_now

    def _requery(self) -> None:
        """Ask for the page now (live), or cut it from the injected rows (offline)."""
        self._publish_query()
        if self.fila.client is not None:
            self.run_worker(self.fila.load("instances"), exclusive=True, group="requery")
        else:
            self.refresh_from(self.fila.data)

    # ------------------------------------------------------------ data

    def refresh_from(self, data: FleetData) -> None:
        view = data.instances
        if view is not None:
            query = self.query_now
            if view.limit is None:  # every row injected: page it here, by the same rule
                rows, matched = fleetquery.page(view.instances, query)
                self._apply_page(rows, matched, len(view.instances), view.generatedAt)
            elif (view.sort, view.order, view.q, view.offset, view.limit) == (
                query.sort,
                query.order,
                query.q,
                query.offset,
                query.limit,
            ):
                self._apply_page(view.instances, view.matched, view.total, view.generatedAt)
            # else: an answer to a query no longer current; the next one is on its way
        self._status(data.errors.get("instances"))

    def apply(self, rows: list[InstanceRow], now: float) -> None:
        """Show `rows` as the whole fleet (injected data), paged by the current query."""
        page_rows, matched = fleetquery.page(rows, self.query_now)
        self._apply_page(page_rows, matched, len(rows), now)

    def _apply_page(self, rows: list[InstanceRow], matched: int, total: int, now: float) -> None:
        """Change the cells that differ; rebuild only when the page holds other rows."""
        table = self.table
        self.now = now
        self.matched, self.total = matched, total
        order = [r.instance for r in rows]
        if self.page_offset and not rows and matched:  # the page ran past the end: step back
            self.page_offset = max(0, (matched - 1) // self.limit * self.limit)
            self._requery()
            return
        previous = self.rows
        self.rows = {r.instance: r for r in rows}
        if order != self.page_order:
            under = self.current()
            at = table.cursor_row
            table.clear()
            self.shown = {}
            for row in rows:
                texts = self._texts(row)
                table.add_row(
                    *(cell(k, t) for k, t in zip(KEYS, texts, strict=True)), key=row.instance
                )
                self.shown[row.instance] = texts
            self.page_order = order
            if under in self.shown:
                table.move_cursor(row=order.index(under), scroll=False)
            elif order:
                table.move_cursor(row=min(at, len(order) - 1), scroll=False)
            return
        changes: list[tuple[str, str, Cell]] = []
        for row in rows:
            before = self.shown[row.instance]
            if previous.get(row.instance) == row:
                texts = [*before[:-1], age(row.lastSeen, now)]  # only the age moves
            else:
                texts = self._texts(row)
            for key, old, new in zip(KEYS, before, texts, strict=True):
                if old != new:
                    changes.append((row.instance, key, cell(key, new)))
            self.shown[row.instance] = texts
        table.set_cells(changes)

    def _texts(self, row: InstanceRow) -> list[str]:
        texts = [fmt(row, self.now) for _, _, fmt, _ in COLUMNS]
        texts[0] = "●" if row.instance in self.selected else ""
        return texts

    def _status(self, error: str | None) -> None:
        first = self.page_offset + 1 if self.shown else 0
        parts = [f"{first}–{self.page_offset + len(self.shown)} of {self.matched:,}"]
        if self.needle or self.matched != self.total:
            parts.append(f"{self.total:,} live")
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        if self.sort_key:
            parts.append(f"sorted by {self.sort_key}{' ↓' if self.sort_reverse else ' ↑'}")
        parts.append("[ ] page")
        if error:
            parts.append(error)
        text = " · ".join(parts)
        if text != self.status_text:  # an update re-lays out the screen: only on change
            self.status_text = text
            shown = Text(text)
            if error:
                shown.stylize("red", len(text) - len(error))
            self.query_one("#status", Static).update(shown)

    # ------------------------------------------------------------ actions

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.needle = event.value.strip().lower()
        self.page_offset = 0
        self._requery()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.table.focus()

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key not in SORT_FIELDS:
            return
        self.sort_reverse = not self.sort_reverse if key == self.sort_key else False
        self.sort_key = key
        self.page_offset = 0
        self._requery()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.table.focus()

    def action_sort_next(self) -> None:
        """Sort by the next column (header clicks choose one directly)."""
        order = list(SORT_FIELDS)
        at = order.index(self.sort_key) + 1 if self.sort_key in order else 0
        self.sort_key = order[at % len(order)]
        self.sort_reverse = False
        self.page_offset = 0
        self._requery()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.page_offset = 0
        self._requery()

    def action_page(self, step: int) -> None:
        """The next or previous page of the matching instances."""
        last = max(0, (self.matched - 1) // self.limit * self.limit)
        offset = min(max(0, self.page_offset + step * self.limit), last)
        if offset != self.page_offset:
            self.page_offset = offset
            self._requery()

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
