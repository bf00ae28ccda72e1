"""Horizontal gauge of a level against its capacity (the global token bucket)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def bar(value: float, capacity: float, width: int) -> Text:
    """`█████░░░` filled in proportion, coloured by how empty it is."""
    ratio = 0.0 if capacity <= 0 else max(0.0, min(1.0, value / capacity))
    filled = round(ratio * width)
    colour = "red" if ratio < 0.1 else "yellow" if ratio < 0.3 else "green"
    text = Text("█" * filled, style=colour)
    text.append("░" * (width - filled), style="grey37")
    return text


class Gauge(Static):
    """A labelled bar with `value / capacity` and a free caption (refill rate, policy)."""

    DEFAULT_CSS = "Gauge { height: 1; }"

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label = label
        self.value = 0.0
        self.capacity = 0.0
        self.caption = ""

    def set_level(self, value: float, capacity: float, caption: str = "") -> None:
        if (value, capacity, caption) != (self.value, self.capacity, self.caption):
            self.value, self.capacity, self.caption = value, capacity, caption
            self.refresh(layout=False)

    def render(self) -> Text:
        head = Text(f"{self.label} ", style="bold")
        tail = Text(f" {self.value:.0f}/{self.capacity:.0f}")
        if self.caption:
            tail.append(f"  {self.caption}", style="dim")
        room = max(5, self.size.width - head.cell_len - tail.cell_len)
        return Text.assemble(head, bar(self.value, self.capacity, room), tail)
