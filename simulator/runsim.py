"""`fila simulate` in a terminal: stub/CDN up, progress bar, summary table, optional JSON."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fila.settings import Settings
from simulator.events import VOICE_ONLY
from simulator.evolution import EvolutionStub
from simulator.simulate import Simulator, Summary, summary_json, summary_rows


def print_summary(console: Console, summary: Summary) -> None:
    table = Table("sent", "count", title=f"simulated → {summary.target}")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    console.print(table)
    if summary.firstError:
        console.print(f"[red]first error:[/red] {summary.firstError}")


async def run_simulation(
    settings: Settings,
    *,
    instances: int,
    rate: float,
    duration: float,
    http_url: str | None,
    stub_port: int,
    linger: float,
    seed: int | None,
    json_out: str | None,
    voice_only: bool = False,
    max_seconds: int = 90,
) -> None:
    console = Console()
    port = stub_port if stub_port >= 0 else (urlsplit(settings.evolution_url).port or 0)
    try:
        # Keep every event's media for the whole run: a backlog may fetch it long after.
        planned = max(1, round(rate * duration / 60.0))
        stub = EvolutionStub(api_key=settings.evolution_api_key, port=port, keep=max(5000, planned))
        await stub.__aenter__()
    except OSError as exc:
        console.print(f"[red]error:[/red] --stub-port {port}: {exc.strerror}")
        raise typer.Exit(1) from None
    try:
        sim = Simulator(
            settings,
            stub,
            instances=instances,
            rate=rate,
            duration=duration,
            http_url=http_url,
            seed=seed,
            weights=VOICE_ONLY if voice_only else None,
            max_voice_seconds=max_seconds,
        )
        with Progress(
            TextColumn("[bold]simulate"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("events", total=sim.planned)
            summary = await sim.run(lambda done, total: bar.update(task, completed=done))
        print_summary(console, summary)
        if json_out:
            data = msgspec.json.encode(summary_json(summary))
            await asyncio.to_thread(Path(json_out).write_bytes, data)
        if linger > 0:
            console.print(f"serving media on {stub.url} for {linger:.0f} s more")
            await asyncio.sleep(linger)
    finally:
        await stub.__aexit__(None, None, None)
