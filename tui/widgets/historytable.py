"""Configuration changes as a table: when, target, route, caller and what changed (old → new).

Shared by the fleet-wide history screen, the per-instance history and `fila config history`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from textual.widgets import DataTable

from fila.history import ConfigChange
from tui.widgets.refill import refill

COLUMNS = ("when", "target", "change", "caller", "route")
MAX_PARTS = 4
"""Fields listed in a change's summary before `…`."""


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flat(inner, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), value


def summary(change: ConfigChange) -> str:
    """`capacity 500→123, policy reject→defer`: the fields whose value differs."""
    if change.target == "fleet" and isinstance(change.new, dict):
        role = change.new.get("role") or "all"
        return f"{change.new.get('action')} {role}"
    old = dict(_flat(change.old)) if isinstance(change.old, dict) else {}
    new = dict(_flat(change.new)) if isinstance(change.new, dict) else {}
    if change.target == "filters" and isinstance(change.new, dict):
        old = {}  # a bulk change's old value is per instance; the new one is what was set
    parts = [
        f"{key} {_short(old.get(key))}→{_short(new.get(key))}"
        if key in old
        else f"{key}={_short(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) or key not in old
    ]
    if change.instances and change.target != f"instance:{change.instances[0]}":
        parts.insert(0, f"{len(change.instances)} instances")
    if not parts:
        return "no change"
    more = "…" if len(parts) > MAX_PARTS else ""
    return ", ".join(parts[:MAX_PARTS]) + more


def _short(value: Any) -> str:
    text = "–" if value is None else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def when(change: ConfigChange) -> str:
    """`2026-12-01 14:56:47`: the ISO time without its fraction and offset."""
    return change.at.replace("T", " ")[:19]


def cells(change: ConfigChange) -> tuple[str, ...]:
    return (when(change), change.target, summary(change), change.caller, change.route)


class HistoryTable(DataTable[str]):
    """One row per change, newest first; the cursor stays on its change through refreshes."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for label in COLUMNS:
            self.add_column(label, key=label)

    def show(self, changes: list[ConfigChange]) -> None:
        refill(self, ((str(c.id), cells(c)) for c in changes))
