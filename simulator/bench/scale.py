"""5,000 instances at ten times the reference load, then pages of the fleet view."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from fila import fleetquery
from simulator import cpuusage
from simulator.bench.harness import Bench
from simulator.receiver import percentile
from simulator.simulate import Summary


async def scale(b: Bench, stub_port: int) -> dict[str, Any]:
    """5,000 instances at ten times the reference load; then pages of the fleet view."""
    instances, per_minute = 5000, 5000.0
    await b.put("/ratelimit", {"capacity": 10**9, "refillPerMinute": 1e9, "policy": "reject"})
    await asyncio.sleep(1)
    await b.clear_receiver()
    memory_before = int((await b.redis.info("memory"))["used_memory"])
    sim, out = await b.start_simulator("scale", stub_port, instances, per_minute, b.p.scale_seconds)
    roots = b.cpu_roots()
    cpu_before = await asyncio.to_thread(cpuusage.tree_cpu, roots)
    await b.mark("scale.start")
    try:
        done = await b.simulator_summary(sim, out, b.p.scale_seconds * 4 + 60)
        summary = msgspec.json.decode(done, type=Summary)
        stats = await b.wait_delivered(summary.voice_ok, b.p.drain_seconds)
        cpu_after = await asyncio.to_thread(cpuusage.tree_cpu, roots)
        await b.mark("scale.end")
        window = (stats["lastAt"] or time.time()) - summary.startedAt
    finally:
        await b.procs.stop(sim)
    memory_after = int((await b.redis.info("memory"))["used_memory"])
    pages = await _fleet_pages(b, 100)
    await b.purge()
    seen = len(summary.byInstance)
    return {
        "instances": instances,
        "instancesSeen": seen,
        "ratePerMinute": per_minute,
        "seconds": b.p.scale_seconds,
        "sent": summary.sent,
        "voiceNotes": summary.voice_ok,
        "delivered": stats["accepted"],
        "allDelivered": int(stats["accepted"]) >= summary.voice_ok,
        "latencyMs": stats["latencyMs"],
        "coresUsed": cpuusage.usage(cpu_before, cpu_after, window),
        "redisBytesGrowth": memory_after - memory_before,
        "redisBytesPerInstance": round((memory_after - memory_before) / max(seen, 1)),
        "fleetPage": pages,
    }


async def _fleet_pages(b: Bench, count: int) -> dict[str, Any]:
    """`GET /fleet/instances` pages of 40 in every sort, as a TUI asks for them."""
    sorts = list(fleetquery.SORTS)
    wall: list[float] = []
    sizes: list[int] = []
    for n in range(count):
        params = {
            "sort": sorts[n % len(sorts)],
            "order": "desc" if n % 2 else "asc",
            "offset": str((n * 40) % 4000),
            "limit": "40",
        }
        started = time.perf_counter()
        response = await b.http.get(f"{b.cp}/fleet/instances", params=params)
        wall.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        sizes.append(len(response.content))
    first = wall[0]
    slowest = [
        f"#{i} {sorts[i % len(sorts)]} {wall[i]:.1f} ms"
        for i in sorted(range(count), key=lambda i: -wall[i])[:5]
    ]
    wall.sort()
    return {
        "requests": count,
        "p50Ms": round(percentile(wall, 50), 1),
        "p99Ms": round(percentile(wall, 99), 1),
        "maxBytes": max(sizes),
        "firstMs": round(first, 1),
        "slowest": slowest,
    }
