"""One line under the header naming every screen and its key, the current one lit."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class TabStrip(Widget):
    """` 1 overview  2 instances … `: which screen this is, and how to reach the others.

    Names shrink to their first letters when the full line does not fit the width.
    """

    def __init__(self, tabs: list[tuple[str, str]], current: str) -> None:
        super().__init__(id="tabs")
        self.tabs = tabs
        self.current = current

    def show(self, current: str) -> None:
        if current != self.current:
            self.current = current
            self.refresh()

    def render(self) -> Text:
        width = self.size.width or 80
        for size in (None, 6, 4):
            line = self._line(size)
            if len(line.plain) <= width:
                return line
        return line

    def _line(self, size: int | None) -> Text:
        line = Text()
        for key, name in self.tabs:
            here = name == self.current
            label = name if here or size is None else name[:size]
            line.append(f" {key} ", style="bold")
            line.append(label, style="bold reverse" if here else "dim")
            line.append(" ")
        return line
