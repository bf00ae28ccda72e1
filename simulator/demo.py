"""`fila demo`: the whole main job on one machine — services, control plane, worker pool,
webhook receiver, Evolution API stub and the 500-instance simulator — then the TUI (or a live
panel with `--headless`), all torn down cleanly on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from fila import redisconn
from fila import stats as fstats
from fila.dev import services
from fila.keys import Keys
from fila.settings import Settings
from simulator import fleetup
from simulator.evolution import EvolutionStub
from simulator.fleetup import MONITORING_PATH, PRINCIPAL_PATH, cp_url
from simulator.procs import ProcessGroup
from simulator.receiver import Receiver
from simulator.simulate import Simulator, Summary


class DemoOptions(msgspec.Struct, kw_only=True):
    headless: bool = False
    duration: float = 0.0
    """Seconds of traffic (0: until the TUI exits; headless defaults to 60)."""
    instances: int = 500
    rate: float = 500.0
    ingest_workers: int = 2
    delivery_workers: int = 2
    receiver_port: int = 38092


class DemoResult(msgspec.Struct, kw_only=True):
    """What the demo saw, printed at the end (and returned for tests)."""

    sent: dict[str, int]
    voiceOk: int
    delivered: int
    verified: int
    duplicates: int
    monitoring: dict[str, int]
    counters: dict[str, int]
    queueStats: dict[str, Any] | None
    stopped: dict[str, int | None]
    """Exit codes after SIGTERM (uvicorn re-raises the signal once shut down: -15 is clean)."""
    deadChildren: list[str]
    """Children that exited on their own while the demo ran."""
    killed: list[str]
    """Children that needed SIGKILL at teardown."""


def delivered(receiver: Receiver) -> list[Any]:
    return [d for d in receiver.accepted() if d.path == PRINCIPAL_PATH]


def monitoring_counts(receiver: Receiver) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in receiver.accepted():
        if d.path == MONITORING_PATH and isinstance(d.json, dict):
            name = str(d.json.get("event"))
            counts[name] = counts.get(name, 0) + 1
    return counts


class Demo:
    def __init__(self, settings: Settings, options: DemoOptions, console: Console) -> None:
        self.settings = settings
        self.options = options
        self.console = console
        self.procs = ProcessGroup(settings, Path(settings.data_dir) / "demo-logs")
        self.summary: Summary | None = None
        self.simulator: Simulator | None = None
        self.redis = redisconn.connect(settings)
        self.counters = fstats.Counters(self.redis, Keys(settings.redis_prefix), settings.timezone)
        self.queue_stats: dict[str, Any] | None = None
        self.dead_during_run: list[str] = []

    def say(self, text: str) -> None:
        self.console.print(f"[bold cyan]demo[/bold cyan] {text}")

    async def run(self) -> DemoResult:
        started_services = await self._services_up()
        stopped: dict[str, int | None] = {}
        evo_port = urlsplit(self.settings.evolution_url).port or 0
        try:
            async with (
                Receiver(self.settings.webhook_secret, self.options.receiver_port) as receiver,
                EvolutionStub(self.settings.evolution_api_key, evo_port) as stub,
            ):
                self.say(f"receiver on {receiver.url}, Evolution API stub on {stub.url}")
                try:
                    await self._start_fleet(receiver)
                    await self._drive(receiver, stub)
                    self.dead_during_run = [c.name for c in self.procs.dead()]
                finally:
                    self.say("stopping workers and the control plane")
                    stopped = await self.procs.stop_all()
                return await self._result(receiver, stopped)
        finally:
            await self.redis.aclose()
            if started_services:
                self.say(f"stopping the services this demo started: {', '.join(started_services)}")
                await self.procs.run("services-down", ["services", "down", *started_services])

    async def _services_up(self) -> list[str]:
        before = await asyncio.to_thread(services.status, self.settings)
        self.say("services up (RabbitMQ, Redis, PostgreSQL, S3)")
        await self.procs.run("services-up", ["services", "up"], timeout=600)
        return [s.name for s in before if s.embedded and not s.answering]

    async def _start_fleet(self, receiver: Receiver) -> None:
        await fleetup.start(
            self.procs,
            self.settings,
            ingest=self.options.ingest_workers,
            delivery=self.options.delivery_workers,
            receiver_url=receiver.url,
            monitoring=True,
            redis=self.redis,
            say=self.say,
        )

    async def _drive(self, receiver: Receiver, stub: EvolutionStub) -> None:
        duration = self.options.duration or (60.0 if self.options.headless else 24 * 3600.0)
        self.simulator = Simulator(
            self.settings,
            stub,
            instances=self.options.instances,
            rate=self.options.rate,
            duration=duration,
        )
        self.say(
            f"simulator: {self.options.instances} instances, {self.options.rate:g} events/min"
            + (f", {duration:g} s" if self.options.duration or self.options.headless else "")
        )
        sim_task = asyncio.create_task(self.simulator.run())
        try:
            if self.options.headless:
                await self._panel(receiver, sim_task, duration)
            else:
                tui = await self.procs.start("tui", ["tui"], foreground=True)
                await tui.process.wait()
        finally:
            if sim_task.done():
                self.summary = sim_task.result()
            else:
                sim_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sim_task
                self.summary = self.simulator.sent_so_far()

    async def _panel(
        self, receiver: Receiver, sim_task: asyncio.Task[Summary], duration: float
    ) -> None:
        end = time.monotonic() + duration
        settle_until: float | None = None
        with Live(self._render(receiver), console=self.console, refresh_per_second=2) as live:
            while True:
                await self._refresh_stats()
                live.update(self._render(receiver))
                dead = self.procs.dead()
                if dead:
                    raise RuntimeError(
                        f"{dead[0].name} exited ({dead[0].process.returncode}):\n{dead[0].tail()}"
                    )
                if sim_task.done() and settle_until is None:
                    self.summary = sim_task.result()
                    # Let the last events through before stopping (bounded).
                    settle_until = time.monotonic() + 30
                if settle_until is not None and (
                    time.monotonic() > settle_until or self._all_delivered(receiver)
                ):
                    return
                if time.monotonic() > end + 45:
                    return
                await asyncio.sleep(1.0)

    def _all_delivered(self, receiver: Receiver) -> bool:
        return self.summary is not None and len(delivered(receiver)) >= self.summary.voice_ok

    async def _refresh_stats(self) -> None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            async with httpx.AsyncClient(timeout=3) as client:
                answer = await client.get(
                    f"{cp_url(self.settings)}/queue/stats",
                    headers={"apikey": self.settings.api_key},
                )
                if answer.status_code == 200:
                    self.queue_stats = answer.json()

    def _render(self, receiver: Receiver) -> Panel:
        sent = len(self.simulator.sent) if self.simulator else 0
        planned = self.simulator.planned if self.simulator else 0
        qs = self.queue_stats or {}
        filt = qs.get("audioFilterStats") or {}
        table = Table.grid(padding=(0, 3))
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_row("events sent", f"{sent} / {planned}")
        table.add_row("queue depth (global.messages)", str(qs.get("queueSize", "…")))
        table.add_row(
            "filtered too short / too long",
            f"{filt.get('tooShort', '…')} / {filt.get('tooLong', '…')}",
        )
        table.add_row("queued (passed the filter)", str(filt.get("processed", "…")))
        table.add_row("processed today", str(qs.get("processedToday", "…")))
        rl = qs.get("rateLimitStatus") or {}
        table.add_row(
            "tokens",
            f"{rl.get('tokens', '…')} / {rl.get('capacity', '…')} ({rl.get('refillRate', '…')})",
        )
        table.add_row("delivered to the receiver", str(len(delivered(receiver))))
        stats = receiver.stats()
        table.add_row("signatures verified / not", f"{stats['verified']} / {stats['unverified']}")
        table.add_row(
            "monitoring events",
            ", ".join(f"{k} {v}" for k, v in monitoring_counts(receiver).items()) or "—",
        )
        lat = stats["latencyMs"]
        if lat["count"]:
            table.add_row(
                "latency p50 / p95 / p99",
                f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} ms",
            )
        return Panel(Group(table), title="Fila demo (headless)", border_style="cyan")

    async def _result(self, receiver: Receiver, stopped: dict[str, int | None]) -> DemoResult:
        counters: dict[str, int] = {}
        with contextlib.suppress(Exception):
            counters = await self.counters.global_counts()
        stats = receiver.stats()
        return DemoResult(
            sent=self.summary.byCategory if self.summary else {},
            voiceOk=self.summary.voice_ok if self.summary else 0,
            delivered=len(delivered(receiver)),
            verified=stats["verified"],
            duplicates=stats["duplicates"],
            monitoring=monitoring_counts(receiver),
            counters=counters,
            queueStats=self.queue_stats,
            stopped=stopped,
            deadChildren=self.dead_during_run,
            killed=list(self.procs.killed),
        )


def print_result(console: Console, result: DemoResult) -> None:
    table = Table("what", "count", title="Fila demo: what happened")
    for category, count in result.sent.items():
        table.add_row(f"sent {category}", str(count))
    table.add_row("voice notes to deliver", str(result.voiceOk))
    table.add_row("delivered (main webhook)", str(result.delivered))
    table.add_row("signatures verified", str(result.verified))
    table.add_row("duplicate deliveries", str(result.duplicates))
    for name, count in result.monitoring.items():
        table.add_row(f"monitoring {name}", str(count))
    for name, count in sorted(result.counters.items()):
        table.add_row(f"counter {name}", str(count))
    oneshot = ("migrate", "services-up", "services-down")
    exits = ", ".join(f"{k}={v}" for k, v in result.stopped.items() if k not in oneshot)
    table.add_row("exit codes", exits)
    table.add_row("needed SIGKILL", ", ".join(result.killed) or "none")
    console.print(table)
