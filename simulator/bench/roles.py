"""Fila's CPU per voice note, one role at a time: a backlog taken by one worker while the
other role is paused, so each figure is that process's own CPU and nothing else's.

End-to-end runs share two cores between every process, which makes a per-note figure move by
±15 % from one minute to the next; here the measured worker runs alone beside the servers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fila import topology
from simulator import cpuusage, fleetup
from simulator.bench.harness import Bench


async def per_role(b: Bench, stub_port: int, notes: int) -> dict[str, Any]:
    """A backlog of `notes` voice notes, then ingest alone, then delivery alone."""
    await fleetup.start(
        b.procs,
        b.s,
        ingest=0,
        delivery=0,
        receiver_url=b.receiver_url,
        monitoring=False,
        redis=b.redis,
    )
    await b.put(
        "/ratelimit",
        {"capacity": 10**9, "refillPerMinute": 1e9, "instanceCapacity": 10**9, "policy": "reject"},
    )
    await _control(b, "pause", None)
    ingest = await b.procs.start("ingest-1", ["worker", "ingest"])
    delivery = await b.procs.start("delivery-1", ["worker", "delivery"])
    await _joined(b, 2)
    rate = 60.0 * 2000  # as fast as the simulator publishes
    sim, out = await b.start_simulator(
        "roles", stub_port, 500, rate, notes / rate * 60, "--voice-only", "--max-seconds", "10"
    )
    try:
        await b.simulator_summary(sim, out, notes / 50 + 120)
        queued = await _depth(b, b.s.ingest_queue)
        roots = {"ingest": ingest.process.pid, "delivery": delivery.process.pid}
        before = await asyncio.to_thread(cpuusage.tree_cpu, roots)
        started = time.monotonic()
        await _control(b, "resume", "ingest")
        await _until(lambda: _depth(b, topology.GLOBAL_QUEUE), queued, notes / 20 + 60)
        ingest_seconds = time.monotonic() - started
        middle = await asyncio.to_thread(cpuusage.tree_cpu, roots)
        started = time.monotonic()
        await _control(b, "resume", "delivery")
        stats = await b.wait_delivered(queued, notes / 20 + 60)
        delivery_seconds = time.monotonic() - started
        after = await asyncio.to_thread(cpuusage.tree_cpu, roots)
    finally:
        await b.procs.stop(sim)
    delivered = int(stats["accepted"])
    return {
        "notes": queued,
        "delivered": delivered,
        "allDelivered": delivered >= queued,
        "ingestMsPerNote": round((middle["ingest"] - before["ingest"]) * 1000 / queued, 3),
        "deliveryMsPerNote": round(
            (after["delivery"] - middle["delivery"]) * 1000 / max(delivered, 1), 3
        ),
        "ingestPerSecond": round(queued / ingest_seconds, 1),
        "deliveryPerSecond": round(delivered / delivery_seconds, 1),
        "idleCpuWhilePausedMs": round((middle["delivery"] - before["delivery"]) * 1000, 1),
    }


async def _control(b: Bench, kind: str, role: str | None) -> None:
    answer = await b.http.post(f"{b.cp}/queue/{kind}", json={"role": role} if role else {})
    answer.raise_for_status()


async def _joined(b: Bench, n: int) -> None:
    deadline = time.monotonic() + 90
    while len(await b.worker_infos()) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not join")
        await asyncio.sleep(0.2)


async def _depth(b: Bench, queue: str) -> int:
    answer = await b.http.get(f"{b.cp}/queue/stats")
    answer.raise_for_status()
    data = answer.json()
    if queue == topology.GLOBAL_QUEUE:
        return int(data.get("queueSize", 0))
    overview = (await b.http.get(f"{b.cp}/fleet/overview")).json()
    return int(overview.get("ingestQueueSize", 0))


async def _until(read: Any, wanted: int, bound: float) -> None:
    deadline = time.monotonic() + bound
    last, changed = -1, time.monotonic()
    while (value := await read()) < wanted:
        if value != last:
            last, changed = value, time.monotonic()
        if time.monotonic() > deadline or time.monotonic() - changed > 15:
            raise RuntimeError(f"{value} of {wanted} reached")
        await asyncio.sleep(0.1)
