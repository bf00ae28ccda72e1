"""A table cell that renders as one pre-aligned segment: the 500-row table repaints each
second, and a rich `Text` cell (wrapping, justification) costs several times more."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment


class Cell:
    """Single-line text, right- or left-aligned in whatever width the column gives it."""

    __slots__ = ("plain", "right")

    def __init__(self, plain: str, right: bool = False) -> None:
        self.plain = plain
        self.right = right

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        text = self.plain[:width]
        yield Segment(text.rjust(width) if self.right else text.ljust(width))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(len(self.plain), len(self.plain))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and (self.plain, self.right) == (other.plain, other.right)

    def __hash__(self) -> int:
        return hash((self.plain, self.right))
