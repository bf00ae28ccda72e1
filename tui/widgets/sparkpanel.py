"""A titled sparkline of one figure's recent history."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline


class SparkPanel(Vertical):
    """Current value in the title, the recent history drawn below it."""

    DEFAULT_CSS = """
    SparkPanel { height: 3; border: none; }
    SparkPanel > Label { width: 1fr; }
    SparkPanel > Sparkline { height: 2; }
    """

    def __init__(self, title: str, unit: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.unit = unit

    def compose(self) -> ComposeResult:
        yield Label(self._caption(None))
        yield Sparkline([])

    def _caption(self, value: float | None) -> str:
        shown = "–" if value is None else f"{value:,.1f}".rstrip("0").rstrip(".")
        return f"[b]{self.title}[/b] {shown}{self.unit}"

    def show(self, values: list[float]) -> None:
        """Draw `values` (oldest first); the last one is the current figure."""
        self.query_one(Label).update(self._caption(values[-1] if values else None))
        self.query_one(Sparkline).data = values
