"""The fleet's current alerts, loud enough to notice from across the room."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from fila.views import Alert


class AlertBanner(Static):
    """Hidden while there is no alert; red when any alert is critical, else amber."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.alerts: list[Alert] = []
        self.display = False

    def show(self, alerts: list[Alert]) -> None:
        if alerts == self.alerts:
            return
        self.alerts = list(alerts)
        self.display = bool(alerts)
        self.set_class(any(a.level == "critical" for a in alerts), "critical")
        text = Text()
        for i, alert in enumerate(alerts):
            if i:
                text.append("\n")
            text.append(f" {'‼' if alert.level == 'critical' else '!'} {alert.code} ", "bold")
            text.append(alert.message)
        self.update(text)
