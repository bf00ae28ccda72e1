"""One line under the header naming every screen and its key, the current one lit."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TabStrip(Static):
    """` 1 overview  2 instances … `: which screen this is, and how to reach the others."""

    def __init__(self, tabs: list[tuple[str, str]], current: str) -> None:
        super().__init__(id="tabs")
        self.tabs = tabs
        self.current = current
        self.update(self._line())

    def show(self, current: str) -> None:
        if current != self.current:
            self.current = current
            self.update(self._line())

    def _line(self) -> Text:
        line = Text()
        for key, name in self.tabs:
            style = "bold reverse" if name == self.current else "dim"
            line.append(f" {key} ", style="bold" if name == self.current else "")
            line.append(f"{name} ", style=style)
            line.append(" ")
        return line
