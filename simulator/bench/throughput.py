"""Throughput and latency: the reference load, then voice notes faster than Fila takes them."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import msgspec

from simulator import cpuusage
from simulator.bench.harness import Bench
from simulator.evolution import EvolutionStub
from simulator.simulate import Simulator


async def reference(b: Bench, stub: EvolutionStub) -> dict[str, Any]:
    """Latency at the reference design load: 500 instances, 500 events/min, default mix."""
    await b.clear_receiver()
    await b.mark("reference.start")
    sim = Simulator(b.s, stub, instances=500, rate=500, duration=b.p.reference_seconds)
    summary = await sim.run()
    stats = await b.wait_delivered(summary.voice_ok, 60)
    await b.mark("reference.end")
    lat = stats["latencyMs"]
    return {
        "instances": 500,
        "ratePerMinute": 500,
        "seconds": b.p.reference_seconds,
        "sent": summary.sent,
        "voiceNotes": summary.voice_ok,
        "delivered": stats["accepted"],
        "latencyMs": lat,
    }


async def saturation(b: Bench, stub_port: int) -> dict[str, Any]:
    """Voice notes offered faster than Fila can take them; throughput is what arrives.

    The simulator and its media CDN run as their own process here, so generating and
    serving the load does not share an event loop (or a core) with the measuring side.
    """
    await b.put(
        "/ratelimit",
        {
            "capacity": 10**9,
            "refillPerMinute": 1e9,
            "instanceCapacity": 10**9,
            "policy": "reject",
        },
    )
    await asyncio.sleep(1)
    await b.clear_receiver()
    sim, out = await b.start_simulator(
        "saturation",
        stub_port,
        500,
        b.p.saturation_rate,
        b.p.saturation_seconds,
        "--voice-only",
        "--max-seconds",
        "10",
    )
    roots = b.cpu_roots()
    cpu_before = await asyncio.to_thread(cpuusage.tree_cpu, roots)
    probe = cpuusage.SpeedProbe()
    try:
        with probe:
            done = await b.simulator_summary(sim, out, b.p.saturation_seconds * 4 + 60)
            summary = msgspec.json.decode(done)
            sent, started = int(summary["sent"]), float(summary["startedAt"])
            stats = await b.wait_delivered(sent, b.p.drain_seconds)
        cpu_after = await asyncio.to_thread(cpuusage.tree_cpu, roots)
        cpu_window = (stats["lastAt"] or time.time()) - started
    finally:
        await b.procs.stop(sim)
    await b.purge()
    delivered = int(stats["accepted"])
    span = (stats["lastAt"] or started) - started
    return {
        "offeredPerSecond": round(sent / max(float(summary["elapsedSeconds"]), 1e-9), 1),
        "sent": sent,
        "delivered": delivered,
        "seconds": round(span, 2),
        "throughputPerSecond": round(delivered / span, 1) if span > 0 else None,
        "latencyMs": stats["latencyMs"],
        "allDelivered": delivered >= sent,
        "coresUsed": cpuusage.usage(cpu_before, cpu_after, cpu_window),
        "cpuWindowSeconds": round(cpu_window, 3),
        "referenceLoopMs": probe.median_ms(),
        "machineCores": os.cpu_count(),
    }
