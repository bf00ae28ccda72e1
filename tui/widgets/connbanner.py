"""Says plainly when the control plane cannot be reached (the app keeps retrying)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ConnectionBanner(Static):
    """Follows the app's `connection_error`: hidden when connected."""

    def __init__(self) -> None:
        super().__init__(classes="connection-banner")
        self.display = False

    def on_mount(self) -> None:
        self.watch(self.app, "connection_error", self._changed, init=True)

    def _changed(self, error: str | None) -> None:
        self.display = error is not None
        if error is not None:
            self.update(Text(f"⚠ control plane: {error}"))
