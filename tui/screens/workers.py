"""Worker heartbeats and fleet control (pause, resume, drain)."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from tui.fleetdata import FleetData
from tui.screens.base import FilaScreen
from tui.screens.instances import age
from tui.widgets.refill import refill


class WorkersScreen(FilaScreen):
    FEEDS = ("workers", "overview")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "app.control('pause', None)", "Pause all"),
        Binding("u", "app.control('resume', None)", "Resume all"),
        Binding("d", "app.control('drain', None)", "Drain all"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static(id="workers-summary")
        table: DataTable[str] = DataTable(id="workers", cursor_type="row", zebra_stripes=True)
        table.add_columns(
            "id", "role", "state", "beat", "in flight", "processed", "failed", "seq", "pid", "host"
        )
        yield table

    def refresh_from(self, data: FleetData) -> None:
        workers = data.workers
        if workers is None and data.overview is not None:
            workers = data.overview.workers
        summary = self.query_one("#workers-summary", Static)
        if workers is None:
            summary.update(Text(data.errors.get("workers", "waiting for the control plane…")))
            return
        paused = data.overview.paused if data.overview else False
        roles = {r: sum(w.role == r for w in workers) for r in ("ingest", "delivery")}
        holding = sorted({w.holding for w in workers if w.holding})
        stale = data.errors.get("workers")
        summary.update(
            f"[b]{len(workers)}[/b] alive · ingest {roles['ingest']} · delivery "
            f"{roles['delivery']}"
            + (" · [b yellow]PAUSED[/b yellow]" if paused else "")
            + "".join(f" · [b yellow]{escape(h)}[/b yellow]" for h in holding)
            + (f" · [b red]not refreshed: {escape(stale)}[/b red]" if stale else "")
        )
        now = data.now
        refill(
            self.query_one("#workers", DataTable),
            (
                (
                    w.id,
                    (
                        w.id,
                        w.role,
                        w.holding if w.holding and w.state == "running" else w.state,
                        age(w.lastBeat, now) if now else "–",
                        str(w.inFlight),
                        f"{w.processed:,}",
                        f"{w.failed:,}",
                        str(w.appliedSeq),
                        str(w.pid),
                        w.host,
                    ),
                )
                for w in sorted(workers, key=lambda w: (w.role, w.id))
            ),
        )
