"""Fleet at a glance: queue, rates, token bucket, counters, workers, health, alerts."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Static

from fila.views import FleetOverview
from tui.fleetdata import FleetData
from tui.screens.base import FilaScreen
from tui.widgets.alertbanner import AlertBanner
from tui.widgets.gauge import Gauge
from tui.widgets.sparkpanel import SparkPanel


def figures(overview: FleetOverview) -> Table:
    """Counters in two label/value column pairs so they fit 80 columns."""
    totals = overview.totals
    pairs = [
        ("processed today", f"{overview.processedToday:,}"),
        ("received", f"{totals.get('received', 0):,}"),
        ("dead letters", f"{overview.deadLetters:,} (+{overview.ingestDeadLetters:,} ingest)"),
        ("queued", f"{totals.get('processed', 0):,}"),
        ("rejected (rate)", f"{totals.get('rateLimited', 0):,}"),
        ("delivered", f"{totals.get('delivered', 0):,}"),
        ("deferred (rate)", f"{totals.get('deferred', 0):,}"),
        ("ingest queue", f"{overview.ingestQueueSize:,}"),
        ("filter tooShort", f"{totals.get('tooShort', 0):,}"),
        ("workers alive", f"{overview.workersAlive}"),
        ("filter tooLong", f"{totals.get('tooLong', 0):,}"),
        ("state", _state(overview)),
    ]
    table = Table.grid(padding=(0, 1), expand=True)
    for _ in range(2):
        table.add_column(style="dim", no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
    for i in range(0, len(pairs), 2):
        (a, av), (b, bv) = pairs[i], pairs[i + 1]
        table.add_row(a, av, b, bv)
    return table


def _state(overview: FleetOverview) -> str:
    flags = ["paused" if overview.paused else "running"]
    if overview.emergencyFilter:
        flags.append("EMERGENCY FILTER")
    return ", ".join(flags)


def busiest_table(overview: FleetOverview) -> Table:
    """Top instances by refused, filtered and failed notes, side by side."""
    table = Table(title="busiest instances", expand=True, box=None, padding=(0, 1))
    for name in ("rejected", "filtered", "failed"):
        table.add_column(name, no_wrap=True, overflow="ellipsis", ratio=1)
    b = overview.busiest
    columns = [b.rejected, b.filtered, b.failed]
    for i in range(max((len(c) for c in columns), default=0)):
        table.add_row(
            *(Text(f"{c[i].instance} {c[i].count:,}") if i < len(c) else Text("") for c in columns)
        )
    return table


def recent_errors(overview: FleetOverview) -> Table:
    """The newest queue.error reasons, age first."""
    table = Table(title="latest queue.error", expand=True, box=None, padding=(0, 1))
    table.add_column("ago", no_wrap=True, justify="right", style="dim")
    table.add_column("instance", no_wrap=True, overflow="ellipsis")
    table.add_column("error", no_wrap=True, overflow="ellipsis", ratio=1)
    for e in overview.recentErrors[:6]:
        ago = max(0.0, overview.timestamp - e.at)
        table.add_row(
            f"{ago:.0f}s" if ago < 120 else f"{ago / 60:.0f}m", e.instance or "–", e.error
        )
    if not overview.recentErrors:
        table.add_row("", "", Text("none", style="dim"))
    return table


def health_line(overview: FleetOverview) -> Text:
    text = Text("health ", style="bold")
    text.append("● ", style="green")
    text.append("control plane  ")
    for dep in overview.health:
        text.append("● " if dep.ok else "✗ ", style="green" if dep.ok else "bold red")
        text.append(dep.name + (f" ({dep.detail})" if dep.detail and not dep.ok else "") + "  ")
    for url in overview.openCircuits:
        text.append("⛔ circuit open ", style="bold red")
        text.append(url + "  ")
    return text


class OverviewScreen(FilaScreen):
    FEEDS = ("overview",)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "app.edit_ratelimit", "Rate limit"),
        Binding("x", "app.edit_emergency", "Emergency filter"),
    ]

    def compose_body(self) -> ComposeResult:
        yield AlertBanner(id="alerts")
        with Horizontal(id="sparks"):
            yield SparkPanel("queue", id="spark-queue")
            yield SparkPanel("in", "/s", id="spark-in")
            yield SparkPanel("out", "/s", id="spark-out")
        yield Gauge("tokens", id="tokens")
        yield Static(id="figures")
        yield Static(id="health")
        with Horizontal(id="lower"):
            yield Static(id="busiest")
            yield Static(id="recent-errors")

    def refresh_from(self, data: FleetData) -> None:
        overview = data.overview
        if overview is None:
            self.query_one("#figures", Static).update("waiting for the control plane…")
            return
        self.query_one(AlertBanner).show(overview.alerts)
        history = data.history or [overview]
        self.query_one("#spark-queue", SparkPanel).show([float(o.queueSize) for o in history])
        self.query_one("#spark-in", SparkPanel).show([o.inRate for o in history])
        self.query_one("#spark-out", SparkPanel).show([o.outRate for o in history])
        bucket = overview.rateLimitStatus
        if bucket is not None:
            self.query_one(Gauge).set_level(
                bucket.tokens, bucket.capacity, f"refill {bucket.refillRate} · {bucket.policy}"
            )
        self.query_one("#figures", Static).update(figures(overview))
        self.query_one("#health", Static).update(health_line(overview))
        self.query_one("#busiest", Static).update(busiest_table(overview))
        self.query_one("#recent-errors", Static).update(recent_errors(overview))
