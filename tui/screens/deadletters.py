"""Dead letters of delivery, ingest or monitoring: browse (filter by instance/reason) and replay."""

from __future__ import annotations

from typing import ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from fila.deadletters import DeadLetter
from tui.client import ControlPlaneError, DeadQueue, Unreachable
from tui.fleetdata import FleetData
from tui.oneatatime import one_at_a_time
from tui.screens.base import FilaScreen


class DeadLettersScreen(FilaScreen):
    AUTO_FOCUS = "#letters"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "reload", "Reload"),
        Binding("r", "replay", "Replay shown"),
    ]
    shown_filters: tuple[DeadQueue, str | None, str | None] | None = None
    """The filters of the letters on screen (set by the last successful load)."""

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Select(
                [("delivery", "delivery"), ("ingest", "ingest"), ("monitoring", "monitoring")],
                value="delivery",
                allow_blank=False,
                id="queue",
            )
            yield Input(placeholder="instance", id="instance")
            yield Input(placeholder="reason", id="reason")
        table: DataTable[str] = DataTable(id="letters", cursor_type="row", zebra_stripes=True)
        table.add_columns("id", "instance", "reason", "tries", "status", "failed at")
        yield table
        yield Static(id="letters-status")

    def _filters(self) -> tuple[DeadQueue, str | None, str | None]:
        queue = cast(DeadQueue, self.query_one("#queue", Select).value)
        instance = self.query_one("#instance", Input).value.strip() or None
        reason = self.query_one("#reason", Input).value.strip() or None
        return queue, instance, reason

    async def on_screen_resume(self) -> None:
        await super().on_screen_resume()
        self.action_reload()

    @on(Select.Changed)
    @on(Input.Submitted)
    def _filters_changed(self) -> None:
        self.action_reload()

    def refresh_from(self, data: FleetData) -> None:
        letters = data.deadLetters
        status = self.query_one("#letters-status", Static)
        if letters is None:
            status.update(Text(data.errors.get("deadLetters", "no dead letters loaded")))
            return
        self.show(letters)
        status.update(f"{len(letters)} dead letter(s) shown · r replays them · g reloads")

    def show(self, letters: list[DeadLetter]) -> None:
        table = self.query_one("#letters", DataTable)
        table.clear()
        for i, letter in enumerate(letters):
            table.add_row(
                letter.id,
                letter.instance or "–",
                letter.reason,
                str(letter.attempts),
                str(letter.statusCode or "–"),
                letter.failedAt or "–",
                key=f"{i}:{letter.id}",
            )

    @work(exclusive=True, group="letters")
    async def action_reload(self) -> None:
        client = self.fila.client
        if client is None:
            return
        queue, instance, reason = self._filters()
        try:
            letters = await client.dead_letters(queue, instance=instance, reason=reason)
        except (ControlPlaneError, Unreachable) as exc:
            self.fila.data.errors["deadLetters"] = f"dead letters: {exc}"
        else:
            self.fila.data.deadLetters = letters
            self.fila.data.errors.pop("deadLetters", None)
            self.shown_filters = (queue, instance, reason)
        self.refresh_from(self.fila.data)

    @work(group="replay")
    @one_at_a_time
    async def action_replay(self) -> None:
        client = self.fila.client
        if client is None:
            return
        letters = self.fila.data.deadLetters
        if self.shown_filters is None or not letters:
            self.notify("nothing shown to replay (g loads)", severity="warning")
            return
        # What was loaded and is shown, not what the inputs say now: edited filters are not
        # applied until g, and the replay stops at as many letters as are shown.
        queue, instance, reason = self.shown_filters
        try:
            result = await client.replay(
                queue, instance=instance, reason=reason, limit=len(letters)
            )
        except (ControlPlaneError, Unreachable) as exc:
            self.notify(f"replay: {exc}", severity="error")
            return
        self.notify(f"replayed {result.replayed}, {result.remaining} left", title="dead letters")
        self.action_reload()
