"""S3 cleanup: schedule edit, run now with live progress, last run."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal
from textual.widgets import Button, Input, Label, ProgressBar, Static, Switch

from tui.client import ControlPlaneError, Unreachable
from tui.contract import CleanupSchedule
from tui.fleetdata import FleetData
from tui.oneatatime import one_at_a_time
from tui.screens.base import FilaScreen


class CleanupScreen(FilaScreen):
    FEEDS = ("cleanup",)
    AUTO_FOCUS = ""  # digits keep switching screens until a field is clicked
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "run_now", "Run now")]

    def __init__(self) -> None:
        super().__init__()
        self.filled = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="cleanup-status")
        yield ProgressBar(total=None, show_eta=False, id="cleanup-progress")
        yield Static(id="cleanup-running")
        with Grid(classes="form"):
            yield Label("enabled")
            yield Switch(True, id="enabled")
            yield Label("retention days")
            yield Input(id="retention", type="integer")
            yield Label("daily time")
            yield Input(id="daily", placeholder="HH:MM")
            yield Label("timezone")
            yield Input(id="timezone", placeholder="America/Sao_Paulo")
        yield Static("", id="schedule-errors", classes="errors")
        with Horizontal(classes="buttons"):
            yield Button("Save schedule", id="save", variant="primary")
            yield Button("Run now", id="run")

    async def on_screen_resume(self) -> None:
        await super().on_screen_resume()
        await self.fila.load("schedule")

    def refresh_from(self, data: FleetData) -> None:
        if data.schedule is not None and not self.filled:
            self._fill(data.schedule)
        status = data.cleanup
        box = self.query_one("#cleanup-status", Static)
        if status is None:
            box.update(Text(data.errors.get("cleanup", "waiting for the control plane…")))
            return
        last = status.lastCleanup
        lines = [
            f"[b]{'enabled' if status.enabled else 'disabled'}[/b] · retention "
            f"{status.retentionDays} d · next {status.nextExecution or '–'}",
            "last run: "
            + (
                f"{last.timestamp} · deleted {last.deletedCount} · errors {last.errorCount}"
                if last
                else "never"
            ),
        ]
        box.update("\n".join(lines))
        running = status.running
        bar = self.query_one("#cleanup-progress", ProgressBar)
        bar.display = running is not None
        progress = self.query_one("#cleanup-running", Static)
        if running is not None:
            bar.update(total=max(running.scanned, 1), progress=running.deleted + running.errors)
            progress.update(
                f"running: scanned {running.scanned} · deleted {running.deleted}"
                f" · errors {running.errors}"
            )
        else:
            progress.update("")

    def _fill(self, schedule: CleanupSchedule) -> None:
        self.filled = True
        self.query_one("#enabled", Switch).value = schedule.enabled
        self.query_one("#retention", Input).value = str(schedule.retentionDays)
        self.query_one("#daily", Input).value = schedule.dailyTime
        self.query_one("#timezone", Input).value = schedule.timezone

    @on(Button.Pressed, "#save")
    @work(group="schedule")
    @one_at_a_time
    async def _save(self) -> None:
        client = self.fila.client
        if client is None:
            return
        retention = self.query_one("#retention", Input).value.strip()
        if not retention.isdigit() or int(retention) < 1:
            self._refused("retentionDays must be a whole number ≥ 1")
            return
        changes = {
            "enabled": self.query_one("#enabled", Switch).value,
            "retentionDays": int(retention),
            "dailyTime": self.query_one("#daily", Input).value.strip(),
            "timezone": self.query_one("#timezone", Input).value.strip(),
        }
        try:
            saved = await client.set_cleanup_schedule(changes)
        except (ControlPlaneError, Unreachable) as exc:
            self._refused(f"server refused: {exc}")
            return
        self._refused(None)
        self._fill(saved)
        self.notify(f"daily at {saved.dailyTime} {saved.timezone}", title="cleanup schedule")

    def _refused(self, message: str | None) -> None:
        box = self.query_one("#schedule-errors", Static)
        box.update(Text(f"✗ {message}" if message else ""))
        box.set_class(message is not None, "visible")

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.action_run_now()

    @work(group="run")
    @one_at_a_time
    async def action_run_now(self) -> None:
        client = self.fila.client
        if client is None:
            return
        self.notify("cleanup started", title="cleanup")
        try:
            result = await client.run_cleanup()
        except (ControlPlaneError, Unreachable) as exc:
            self.notify(f"cleanup: {exc}", severity="error")
            return
        self.notify(
            f"deleted {result.deletedCount}, errors {result.errorCount}", title="cleanup done"
        )
        await self.fila.load("cleanup")
