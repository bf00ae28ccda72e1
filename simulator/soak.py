"""`fila bench --soak MINUTES`: the reference load for a long time, with TUIs open, watching memory.

Every Fila process's resident memory is sampled every 30 s; what counts is the growth from
minute 2 (after warm-up) to the end, and that every voice note sent was delivered.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from fila.settings import Settings
from simulator.bench import QUICK, Bench
from simulator.benchenv import isolated
from simulator.evolution import EvolutionStub
from simulator.simulate import Simulator

SAMPLE_SECONDS = 30.0
WARMUP_MINUTES = 2.0
GROWTH_TARGET_PERCENT = 5.0


class SoakReport(msgspec.Struct, kw_only=True):
    minutes: float
    tuis: int
    sent: int
    voiceNotes: int
    delivered: int
    lost: int
    samples: dict[str, list[tuple[float, int]]]
    """Process → (minutes since start, RSS bytes)."""
    growthPercent: dict[str, float]
    """RSS at the end against RSS at minute 2."""
    growthFrom5Percent: dict[str, float] = msgspec.field(default_factory=dict)
    """The same from minute 5, for runs long enough to have one."""


def rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def growth(samples: list[tuple[float, int]], since: float = WARMUP_MINUTES) -> float:
    """Percent growth from the first sample at or after `since` minutes to the last one."""
    after = [s for s in samples if s[0] >= since] or samples
    first, last = after[0][1], samples[-1][1]
    return round((last - first) / first * 100, 2) if first else 0.0


async def soak(base: Settings, minutes: float, tuis: int, console: Console) -> SoakReport:
    async with isolated(base) as settings:
        bench = Bench(settings, QUICK, workers=2, limiter_procs=1)
        stub_port = int(settings.evolution_url.rsplit(":", 1)[1])
        try:
            await bench.start_receiver()
            await bench.start_fleet()
            for n in range(tuis):
                await bench.procs.start(
                    f"tui-{n + 1}",
                    ["tui", "--headless", "--screen", "overview" if n % 2 else "instances"],
                )
            async with EvolutionStub(settings.evolution_api_key, stub_port) as stub:
                sim = Simulator(settings, stub, instances=500, rate=500, duration=minutes * 60)
                started = time.monotonic()
                running = asyncio.create_task(sim.run())
                samples: dict[str, list[tuple[float, int]]] = {}
                while not running.done():
                    at = (time.monotonic() - started) / 60
                    for child in bench.procs.children:
                        if child.alive and child.name != "receiver":
                            size = rss(child.process.pid)
                            if size:
                                samples.setdefault(child.name, []).append((round(at, 2), size))
                    console.print(
                        f"soak {at:5.1f}/{minutes:g} min: "
                        + ", ".join(f"{k} {v[-1][1] / 2**20:.0f} MB" for k, v in samples.items())
                    )
                    await asyncio.wait({running}, timeout=SAMPLE_SECONDS)
                summary = running.result()
            stats = await bench.wait_delivered(summary.voice_ok, 120)
        finally:
            await bench.procs.stop_all()
            await bench.close()
    delivered = int(stats["accepted"]) - int(stats.get("duplicates", 0))
    return SoakReport(
        minutes=minutes,
        tuis=tuis,
        sent=summary.sent,
        voiceNotes=summary.voice_ok,
        delivered=delivered,
        lost=max(0, summary.voice_ok - delivered),
        samples=samples,
        growthPercent={k: growth(v) for k, v in samples.items()},
        growthFrom5Percent={k: growth(v, 5.0) for k, v in samples.items() if minutes > 5},
    )


def print_soak(console: Console, report: SoakReport) -> None:
    table = Table("process", "RSS at min 2 (MB)", "RSS at end (MB)", "growth", title="Soak: memory")
    for name, points in report.samples.items():
        after = [p for p in points if p[0] >= WARMUP_MINUTES] or points
        pct = report.growthPercent[name]
        colour = "green" if pct < GROWTH_TARGET_PERCENT else "red"
        table.add_row(
            name,
            f"{after[0][1] / 2**20:.1f}",
            f"{points[-1][1] / 2**20:.1f}",
            f"[{colour}]{pct:+.2f} %",
            f"{report.growthFrom5Percent[name]:+.2f} %"
            if name in report.growthFrom5Percent
            else "–",
        )
    console.print(table)
    console.print(
        f"{report.minutes:g} min at the reference load with {report.tuis} TUIs:"
        f" {report.delivered} of {report.voiceNotes} voice notes delivered, lost {report.lost}"
    )
