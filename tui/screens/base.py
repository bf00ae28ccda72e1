"""What every Fila screen shares: header, connection banner, footer, and a render hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.fleetdata import FleetData
from tui.widgets.connbanner import ConnectionBanner
from tui.widgets.tabstrip import TabStrip

if TYPE_CHECKING:
    from tui.app import FilaApp


class FilaScreen(Screen[None]):
    """A screen renders `FleetData` and names the feeds the app should poll while it shows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave_field", "Leave field", show=False)
    ]
    FEEDS: ClassVar[tuple[str, ...]] = ()
    """Names of `FleetData` fields the app fetches each second while this screen is current."""

    @property
    def fila(self) -> FilaApp:
        return cast("FilaApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(icon="≋")
        yield TabStrip(self.fila.tabs, self.fila.current_mode or "")
        yield ConnectionBanner()
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    async def on_screen_resume(self) -> None:
        self.query_one(TabStrip).show(self.fila.current_mode or "")
        self.refresh_from(self.fila.data)

    def action_leave_field(self) -> None:
        """Esc gives the keys back to navigation (digits switch screens again)."""
        self.set_focus(None)

    def refresh_from(self, data: FleetData) -> None:
        """Show `data`; called each time a feed of this screen arrives, and on resume."""
