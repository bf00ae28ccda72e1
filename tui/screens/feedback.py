"""Processing-feedback sessions: what runs, for how long, and cancel."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from tui.client import ControlPlaneError, Unreachable
from tui.fleetdata import FleetData
from tui.oneatatime import one_at_a_time
from tui.screens.base import FilaScreen
from tui.widgets.refill import refill


def duration(ms: float) -> str:
    seconds = int(ms // 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class FeedbackScreen(FilaScreen):
    FEEDS = ("process",)
    BINDINGS: ClassVar[list[BindingType]] = [Binding("c", "cancel_session", "Cancel session")]

    def compose_body(self) -> ComposeResult:
        yield Static(id="feedback-stats")
        table: DataTable[str] = DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        # The long session id goes last: a narrow terminal cuts it, not the reaction.
        table.add_columns("instance", "reaction", "running for", "type", "session")
        yield table

    def refresh_from(self, data: FleetData) -> None:
        status = data.process
        stats = self.query_one("#feedback-stats", Static)
        if status is None:
            stats.update(Text(data.errors.get("process", "waiting for the control plane…")))
            return
        stale = data.errors.get("process")
        stats.update(
            f"[b]{status.activeSessionsCount}[/b] active · {status.stats.totalStarted} started"
            f" · average {duration(status.stats.averageProcessingTime)}"
            + (f" · [b red]not refreshed: {escape(stale)}[/b red]" if stale else "")
        )
        refill(
            self.query_one("#sessions", DataTable),
            (
                (
                    s.sessionId,
                    (
                        s.instance,
                        self._reaction(s.currentReaction),
                        duration(s.runningFor),
                        s.processType,
                        s.sessionId,
                    ),
                )
                for s in status.activeSessions
            ),
        )

    def _reaction(self, reaction: str | int | None) -> str:
        """The emoji itself when the server gives its index in the feedback cycle."""
        if reaction is None:
            return "starting"
        cycle = self.fila.settings.feedback_cycle
        if isinstance(reaction, int) and cycle:
            return cycle[reaction % len(cycle)]
        return str(reaction)

    @work(group="cancel")
    @one_at_a_time
    async def action_cancel_session(self) -> None:
        table = self.query_one("#sessions", DataTable)
        client = self.fila.client
        if not table.row_count or client is None:
            return
        session = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        try:
            await client.cancel_session(session)
        except (ControlPlaneError, Unreachable) as exc:
            self.notify(f"cancel {session}: {exc}", severity="error")
            return
        self.notify(f"session {session} cancelled", title="feedback")
        await self.fila.load("process")
