"""`fila bench`: raw ceilings of each hop, then Fila end to end, limiter accuracy across worker
processes, fairness under one noisy instance, and config propagation — in one bounded run on
isolated namespaces, with a progress bar, a table, JSON, and the figures checked against targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fila import fleetquery, redisconn, services, topology
from fila.keys import Keys
from fila.models import RateLimitConfig, WorkerInfo
from fila.ratelimit import TokenBucket
from fila.settings import Settings
from simulator import capacity, cpuusage, meter, rawhops
from simulator import fairness as fair
from simulator.benchenv import free_port, isolated
from simulator.events import VOICE_ONLY
from simulator.evolution import EvolutionStub
from simulator.limiterload import LoadReport
from simulator.procs import ProcessGroup
from simulator.receiver import percentile
from simulator.simulate import Simulator, Summary

PRINCIPAL = "/principal"


class Profile(msgspec.Struct, kw_only=True):
    """How long each part runs; `--quick` keeps the whole bench within a couple of minutes."""

    hop_seconds: float
    reference_seconds: float
    saturation_rate: float
    saturation_seconds: float
    drain_seconds: float
    fairness_seconds: float
    propagation_changes: int
    limiter_seconds: float
    scale_seconds: float


QUICK = Profile(
    hop_seconds=3,
    reference_seconds=20,
    saturation_rate=18000,
    saturation_seconds=10,
    drain_seconds=60,
    fairness_seconds=12,
    propagation_changes=20,
    limiter_seconds=5,
    scale_seconds=20,
)
FULL = Profile(
    hop_seconds=10,
    reference_seconds=90,
    saturation_rate=15000,
    saturation_seconds=30,
    drain_seconds=150,
    fairness_seconds=40,
    propagation_changes=100,
    limiter_seconds=15,
    scale_seconds=60,
)


class TargetCheck(msgspec.Struct, kw_only=True):
    name: str
    value: float | None
    target: str
    met: bool | None


class BenchReport(msgspec.Struct, kw_only=True):
    startedAt: str
    mode: str
    machine: dict[str, Any]
    rawHops: list[rawhops.HopResult] = msgspec.field(default_factory=list)
    reference: dict[str, Any] = msgspec.field(default_factory=dict)
    endToEnd: dict[str, Any] = msgspec.field(default_factory=dict)
    limiter: dict[str, Any] = msgspec.field(default_factory=dict)
    fairness: dict[str, Any] = msgspec.field(default_factory=dict)
    propagation: dict[str, Any] = msgspec.field(default_factory=dict)
    scale: dict[str, Any] = msgspec.field(default_factory=dict)
    capacity: dict[str, Any] = msgspec.field(default_factory=dict)
    """Per-note costs, idle CPU and ceilings (read by `fila capacity`), and the model's check."""
    targets: list[TargetCheck] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)


def jain(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when every value is equal, 1/n when one takes everything."""
    if not values or not any(values):
        return None
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


class Bench:
    def __init__(
        self, settings: Settings, profile: Profile, workers: int, limiter_procs: int
    ) -> None:
        self.s = settings
        self.p = profile
        self.workers = workers
        self.limiter_procs = limiter_procs
        self.procs = ProcessGroup(settings, Path(settings.data_dir) / "bench-logs")
        self.receiver_url = ""
        self.cp = f"http://{settings.http_host}:{settings.http_port}"
        self.http = httpx.AsyncClient(timeout=30, headers={"apikey": settings.api_key})
        self.redis = redisconn.connect(settings)
        self.keys = Keys(settings.redis_prefix)
        self.readings: dict[str, meter.Reading] = {}

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()

    async def mark(self, key: str) -> None:
        """A reading of every engine's counters, kept under `key` for the capacity model."""
        self.readings[key] = await meter.read(
            self.s, self.redis, self.cpu_roots(), await self.receiver_stats()
        )

    async def idle(self, seconds: float) -> dict[str, float]:
        """CPU cores each process uses with no load, by role (heartbeats, polls, timers)."""
        await self.mark("idle.start")
        await asyncio.sleep(seconds)
        await self.mark("idle.end")
        used = meter.usage(self.readings["idle.start"], self.readings["idle.end"], 0)
        counts = {"ingest": self.workers, "delivery": self.workers, "controlplane": 1}
        return {role: round(used.cpuCores.get(role, 0.0) / n, 4) for role, n in counts.items()}

    # ------------------------------------------------------------------ helpers

    async def receiver_stats(self) -> dict[str, Any]:
        answer = await self.http.get(f"{self.receiver_url}/_receiver/stats")
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    async def clear_receiver(self) -> None:
        (await self.http.delete(f"{self.receiver_url}/_receiver/stats")).raise_for_status()

    async def put(self, path: str, body: dict[str, Any]) -> Any:
        answer = await self.http.put(f"{self.cp}{path}", json=body)
        if answer.status_code >= 300:
            raise RuntimeError(f"PUT {path} answered {answer.status_code}: {answer.text[:300]}")
        return answer.json()

    async def wait_delivered(self, n: int, bound: float, stall: float = 10.0) -> dict[str, Any]:
        """Poll the receiver until `n` main deliveries arrived, progress stalls, or `bound`."""
        deadline = time.monotonic() + bound
        last_count, last_change = -1, time.monotonic()
        while True:
            stats = await self.receiver_stats()
            count = int(stats["accepted"])
            if count >= n or time.monotonic() > deadline:
                return stats
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > stall:
                return stats
            await asyncio.sleep(0.25)

    async def purge(self) -> None:
        """Drop what is left queued so one part cannot spill into the next."""
        connection = await aio_pika.connect_robust(self.s.rabbitmq_url)
        try:
            channel = await connection.channel()
            for name in (self.s.ingest_queue, topology.GLOBAL_QUEUE):
                with contextlib.suppress(Exception):
                    queue = await channel.declare_queue(name, passive=True)
                    await queue.purge()
        finally:
            await connection.close()

    # ------------------------------------------------------------------ fleet

    async def start_receiver(self) -> None:
        port = free_port()
        await self.procs.start(
            "receiver", ["receiver", "--port", str(port), "--secret", self.s.webhook_secret]
        )
        self.receiver_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                await self.receiver_stats()
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the receiver did not start")

    async def start_fleet(self) -> None:
        cp = await self.procs.start("controlplane", ["controlplane"])
        deadline = time.monotonic() + 120
        while True:
            if not cp.alive:
                raise RuntimeError(f"the control plane exited:\n{cp.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get(f"{self.cp}/healthz")).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the control plane did not become healthy")
            await asyncio.sleep(0.3)
        for n in range(self.workers):
            await self.procs.start(f"ingest-{n + 1}", ["worker", "ingest"])
            await self.procs.start(f"delivery-{n + 1}", ["worker", "delivery"])
        deadline = time.monotonic() + 90
        while await self.redis.zcard(self.keys.workers) < 2 * self.workers:
            dead = self.procs.dead()
            if dead:
                raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not join the fleet")
            await asyncio.sleep(0.2)
        await self.put(
            "/webhook/global/config",
            {
                "principal": {"enabled": True, "url": self.receiver_url + PRINCIPAL},
                "monitoramento": {"enabled": False},
            },
        )

    def cpu_roots(self) -> dict[str, int]:
        """Every process that takes part in an end-to-end run, by name."""
        roots = {c.name: c.process.pid for c in self.procs.children if c.alive}
        roots["bench (this process)"] = os.getpid()
        for service in services.services(self.s):
            pid = service.pid()
            if pid is not None:
                roots[f"service {service.name}"] = pid
        return roots

    async def worker_infos(self) -> list[WorkerInfo]:
        ids = [
            i.decode() if isinstance(i, bytes) else str(i)
            for i in await self.redis.zrange(self.keys.workers, 0, -1)
        ]
        raws = await self.redis.mget([self.keys.worker(i) for i in ids]) if ids else []
        return [msgspec.json.decode(r, type=WorkerInfo) for r in raws if r]

    # ------------------------------------------------------------------ parts

    async def reference(self, stub: EvolutionStub) -> dict[str, Any]:
        """Latency at the reference design load: 500 instances, 500 events/min, default mix."""
        await self.clear_receiver()
        await self.mark("reference.start")
        sim = Simulator(self.s, stub, instances=500, rate=500, duration=self.p.reference_seconds)
        summary = await sim.run()
        stats = await self.wait_delivered(summary.voice_ok, 60)
        await self.mark("reference.end")
        lat = stats["latencyMs"]
        return {
            "instances": 500,
            "ratePerMinute": 500,
            "seconds": self.p.reference_seconds,
            "sent": summary.sent,
            "voiceNotes": summary.voice_ok,
            "delivered": stats["accepted"],
            "latencyMs": lat,
        }

    async def saturation(self, stub_port: int) -> dict[str, Any]:
        """Voice notes offered faster than Fila can take them; throughput is what arrives.

        The simulator and its media CDN run as their own process here, so generating and
        serving the load does not share an event loop (or a core) with the measuring side.
        """
        await self.put(
            "/ratelimit",
            {
                "capacity": 10**9,
                "refillPerMinute": 1e9,
                "instanceCapacity": 10**9,
                "policy": "reject",
            },
        )
        await asyncio.sleep(1)
        await self.clear_receiver()
        out = Path(self.procs.log_dir) / "saturation.json"
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(out.unlink)
        sim = await self.procs.start(
            "simulate-saturation",
            [
                "simulate",
                "--instances",
                "500",
                "--rate",
                str(self.p.saturation_rate),
                "--duration",
                str(self.p.saturation_seconds),
                "--stub-port",
                str(stub_port),
                "--linger",
                str(self.p.drain_seconds + 30),
                "--voice-only",
                "--max-seconds",
                "10",
                "--json",
                str(out),
            ],
        )
        roots = self.cpu_roots()
        cpu_before = await asyncio.to_thread(cpuusage.tree_cpu, roots)
        try:
            deadline = time.monotonic() + self.p.saturation_seconds * 4 + 60
            while not await asyncio.to_thread(out.exists):
                if not sim.alive:
                    raise RuntimeError(f"the simulator exited:\n{sim.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not finish")
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.2)
            summary = msgspec.json.decode(await asyncio.to_thread(out.read_bytes))
            sent, started = int(summary["sent"]), float(summary["startedAt"])
            stats = await self.wait_delivered(sent, self.p.drain_seconds)
            cpu_after = await asyncio.to_thread(cpuusage.tree_cpu, roots)
            cpu_window = (stats["lastAt"] or time.time()) - started
        finally:
            await self.procs.stop(sim)
        await self.purge()
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
            "machineCores": os.cpu_count(),
        }

    async def scale(self, stub_port: int) -> dict[str, Any]:
        """5,000 instances at ten times the reference load; then pages of the fleet view."""
        instances, per_minute = 5000, 5000.0
        await self.put(
            "/ratelimit", {"capacity": 10**9, "refillPerMinute": 1e9, "policy": "reject"}
        )
        await asyncio.sleep(1)
        await self.clear_receiver()
        memory_before = int((await self.redis.info("memory"))["used_memory"])
        out = Path(self.procs.log_dir) / "scale.json"
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(out.unlink)
        sim = await self.procs.start(
            "simulate-scale",
            [
                "simulate",
                "--instances",
                str(instances),
                "--rate",
                str(per_minute),
                "--duration",
                str(self.p.scale_seconds),
                "--stub-port",
                str(stub_port),
                "--linger",
                str(self.p.drain_seconds + 30),
                "--json",
                str(out),
            ],
        )
        roots = self.cpu_roots()
        cpu_before = await asyncio.to_thread(cpuusage.tree_cpu, roots)
        await self.mark("scale.start")
        try:
            deadline = time.monotonic() + self.p.scale_seconds * 4 + 60
            while not await asyncio.to_thread(out.exists):
                if not sim.alive:
                    raise RuntimeError(f"the simulator exited:\n{sim.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not finish")
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.2)
            summary = msgspec.json.decode(await asyncio.to_thread(out.read_bytes), type=Summary)
            stats = await self.wait_delivered(summary.voice_ok, self.p.drain_seconds)
            cpu_after = await asyncio.to_thread(cpuusage.tree_cpu, roots)
            await self.mark("scale.end")
            window = (stats["lastAt"] or time.time()) - summary.startedAt
        finally:
            await self.procs.stop(sim)
        memory_after = int((await self.redis.info("memory"))["used_memory"])
        pages = await self._fleet_pages(100)
        await self.purge()
        seen = len(summary.byInstance)
        return {
            "instances": instances,
            "instancesSeen": seen,
            "ratePerMinute": per_minute,
            "seconds": self.p.scale_seconds,
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

    async def _fleet_pages(self, count: int) -> dict[str, Any]:
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
            response = await self.http.get(f"{self.cp}/fleet/instances", params=params)
            wall.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            sizes.append(len(response.content))
        wall.sort()
        return {
            "requests": count,
            "p50Ms": round(percentile(wall, 50), 1),
            "p99Ms": round(percentile(wall, 99), 1),
            "maxBytes": max(sizes),
        }

    async def fairness(self, stub: EvolutionStub) -> dict[str, Any]:
        """Work-conserving fair sharing: a burst with the defaults, then contention, then weights.

        The limiter-level parts drive the shared bucket directly on Redis (exact figures);
        the end-to-end part sends through the whole pipeline to the receiver.
        """
        prefix = f"{self.s.redis_prefix}fairness:"
        burst = await fair.burst(
            self.redis, Keys(prefix + "burst:"), RateLimitConfig(), sent=100, seconds=10
        )
        contention_limits = RateLimitConfig(capacity=100, refillPerMinute=6000, reservePercent=30)
        contention = await fair.contention(
            self.redis,
            Keys(prefix + "contention:"),
            contention_limits,
            normals=50,
            normal_per_second=1.8,
            hot_factor=10,
            seconds=self.p.fairness_seconds,
        )
        weight_limits = RateLimitConfig(
            capacity=40,
            refillPerMinute=2400,
            instanceCapacity=2,
            weights={"w1": 1, "w3": 3},
        )
        weights = await fair.weighted(
            self.redis, Keys(prefix + "weights:"), weight_limits, per_second=120, seconds=10
        )
        return {
            "burst": {"limits": "defaults", **msgspec.to_builtins(burst)},
            "contention": {
                "limits": msgspec.to_builtins(contention_limits),
                "normalPerSecond": 1.8,
                "hotFactor": 10,
                **msgspec.to_builtins(contention),
            },
            "weights": {
                "limits": msgspec.to_builtins(weight_limits),
                **msgspec.to_builtins(weights),
            },
            "endToEnd": await self._fairness_end_to_end(stub),
        }

    async def _fairness_end_to_end(self, stub: EvolutionStub) -> dict[str, Any]:
        """50 instances at 90 % of their share plus one at 10× their rate, a 20/s global limit."""
        limits = {
            "capacity": 100,
            "refillPerMinute": 1200.0,
            "reservePercent": 30,
            "instanceCapacity": 20,
            "policy": "reject",
        }
        await self.put("/ratelimit", limits)
        await asyncio.sleep(1)
        await self.clear_receiver()
        hot = "sim-hot"
        per_instance = 0.9 * 1200 / 51  # per minute, 90 % of an equal share
        sim = Simulator(
            self.s,
            stub,
            instances=50,
            rate=per_instance * 60,
            duration=self.p.fairness_seconds,
            weights=VOICE_ONLY,
            hot_instance=hot,
            hot_factor=10,
            max_voice_seconds=10,
        )
        summary = await sim.run()
        stats = await self.wait_delivered(summary.sent, 30, stall=5)
        await self.purge()
        got: dict[str, int] = stats.get("byInstance", {})
        others = [n for n in summary.byInstance if n != hot]
        ratios = [got.get(n, 0) / summary.byInstance[n] for n in others if summary.byInstance[n]]
        index = jain(ratios)
        return {
            "limits": limits,
            "instances": len(others),
            "hotInstance": hot,
            "hotFactor": 10,
            "sent": summary.sent,
            "delivered": stats["accepted"],
            "hotSent": summary.byInstance.get(hot, 0),
            "hotDelivered": got.get(hot, 0),
            "othersSent": sum(summary.byInstance[n] for n in others),
            "othersDelivered": sum(got.get(n, 0) for n in others),
            "worstOtherShare": round(min(ratios), 4) if ratios else None,
            "jainOthers": round(index, 4) if index is not None else None,
        }

    async def propagation(self) -> dict[str, Any]:
        """PUT a filter, then wait until every worker's heartbeat says it applied that change."""
        samples: list[float] = []
        put_ms: list[float] = []
        missed = 0
        expected = 2 * self.workers
        for n in range(self.p.propagation_changes):
            started = time.time()
            await self.put(
                "/instance/bench-propagation/filters/audio",
                {"minDurationSeconds": 3 + n % 5, "maxDurationSeconds": 7200, "enabled": True},
            )
            put_ms.append((time.time() - started) * 1000)
            seq = int(await self.redis.get(self.keys.config_seq) or 0)
            deadline = time.monotonic() + 5
            while True:
                infos = await self.worker_infos()
                applied = [i for i in infos if i.appliedSeq >= seq]
                if len(applied) >= expected:
                    samples.append((max(i.appliedAt for i in applied) - started) * 1000)
                    break
                if time.monotonic() > deadline:
                    missed += 1
                    break
                await asyncio.sleep(0.002)
        samples.sort()
        return {
            "changes": self.p.propagation_changes,
            "workers": expected,
            "missed": missed,
            "p50Ms": round(percentile(samples, 50), 1) if samples else None,
            "p95Ms": round(percentile(samples, 95), 1) if samples else None,
            "p99Ms": round(percentile(samples, 99), 1) if samples else None,
            "maxMs": round(samples[-1], 1) if samples else None,
            "putRoundTripP50Ms": round(percentile(sorted(put_ms), 50), 1) if put_ms else None,
        }

    async def limiter(self) -> dict[str, Any]:
        """N processes share one bucket; admitted should equal capacity + refill·t."""
        capacity, refill = 200, 12000.0
        prefix = f"{self.s.redis_prefix}limiter:"
        start_at = time.time() + 3.0
        config = RateLimitConfig(
            capacity=capacity,
            refillPerMinute=refill,
            instanceCapacity=10**9,
        )
        env = {**os.environ, **self.s.to_env()}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "simulator.limiterload",
                prefix,
                str(capacity),
                str(refill),
                str(start_at),
                str(self.p.limiter_seconds),
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(self.limiter_procs)
        ]
        # Open the window: take the whole capacity at once, so the bucket starts empty at a
        # known server time and no refill is lost to the cap before the processes begin.
        bucket = TokenBucket(self.redis, Keys(prefix))
        await bucket.peek("limiter", config)  # connections and script cache warm before the window
        await asyncio.sleep(max(0.0, start_at - 0.2 - time.time()))
        primed = await bucket.acquire("limiter", config, cost=capacity)
        raw_t0 = await self.redis.hget(Keys(prefix).bucket_global, "ts")
        if not primed.admitted or raw_t0 is None:
            raise RuntimeError("could not open the limiter window")
        t0 = float(raw_t0)
        reports: list[LoadReport] = []
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), self.p.limiter_seconds + 60)
            reports.append(msgspec.json.decode(out.strip().splitlines()[-1], type=LoadReport))
        admitted = capacity + sum(r.admitted for r in reports)
        # The bucket's own record closes the window: `ts` is the server time of the last call
        # and `tokens` what was left unspent then.
        raw_tokens, raw_ts = await self.redis.hmget(Keys(prefix).bucket_global, ["tokens", "ts"])
        if raw_tokens is None or raw_ts is None:
            raise RuntimeError("the limiter bucket was never written")
        tokens_left, last_ms = float(raw_tokens), float(raw_ts)
        span_s = (last_ms - t0) / 1000
        expected = capacity + refill / 60 * span_s - tokens_left
        return {
            "processes": self.limiter_procs,
            "capacity": capacity,
            "refillPerMinute": refill,
            "seconds": round(span_s, 3),
            "calls": sum(r.calls for r in reports),
            "admitted": admitted,
            "expected": round(expected, 1),
            "errorPercent": round(abs(admitted - expected) / expected * 100, 3),
        }


ROLES = ("ingest", "delivery", "controlplane")


def costs_of(used: meter.Usage, idle: dict[str, float], procs: dict[str, int]) -> capacity.Costs:
    """Per-note costs of one measured part, each role's idle CPU taken out first."""
    per = used.perNote
    cpu: dict[str, float] = {}
    for role in ROLES:
        busy = used.totals[f"cpuSeconds.{role}"] - idle[role] * procs[role] * used.seconds
        cpu[role] = round(max(0.0, busy) / max(used.notes, 1) * 1000, 3)
    return capacity.Costs(
        cpuMsPerNote=cpu,
        idleCoresPerProcess=idle,
        amqpPublishPerNote=per["amqpPublish"],
        amqpDeliverPerNote=per["amqpDeliver"],
        amqpAckPerNote=per["amqpAck"],
        redisCommandsPerNote=per["redisCommands"],
        redisScriptsPerNote=per["redisScripts"],
        s3PutsPerNote=per["s3Puts"],
        s3BytesPerNote=per["s3Bytes"],
        webhookPostsPerNote=per["webhookPosts"],
        webhookBytesPerNote=per["webhookBytes"],
        pgTransactionsPerNote=per["pgTransactions"],
    )


def predicted_vs_measured(
    costs: capacity.Costs, used: meter.Usage, procs: dict[str, int]
) -> dict[str, dict[str, float]]:
    """What costs measured elsewhere predict for this part, beside what it measured."""
    rate = used.notes / used.seconds
    out: dict[str, dict[str, float]] = {}
    for role in ROLES:
        predicted = (
            rate * costs.cpuMsPerNote[role] / 1000 + costs.idleCoresPerProcess[role] * procs[role]
        )
        measured = used.totals[f"cpuSeconds.{role}"] / used.seconds
        out[f"cores {role}"] = {"predicted": predicted, "measured": measured}
    for name, per, total in (
        ("amqp publishes/s", costs.amqpPublishPerNote, "amqpPublish"),
        ("amqp deliveries/s", costs.amqpDeliverPerNote, "amqpDeliver"),
        ("redis commands/s", costs.redisCommandsPerNote, "redisCommands"),
        ("s3 PUTs/s", costs.s3PutsPerNote, "s3Puts"),
        ("webhook POSTs/s", costs.webhookPostsPerNote, "webhookPosts"),
    ):
        out[name] = {"predicted": rate * per, "measured": used.totals[total] / used.seconds}
    for row in out.values():
        m = row["measured"]
        row["errorPercent"] = round((row["predicted"] - m) / m * 100, 1) if m else 0.0
        row["predicted"], row["measured"] = round(row["predicted"], 3), round(m, 3)
    return out


def capacity_section(
    report: BenchReport,
    readings: dict[str, meter.Reading],
    idle: dict[str, float],
    workers: int,
) -> dict[str, Any]:
    """Costs from the reference and 5,000-instance parts; each predicts the other."""
    procs = {"ingest": workers, "delivery": workers, "controlplane": 1}
    hops = {h.hop: h.perSecond for h in report.rawHops}
    ceilings = capacity.Ceilings(
        amqpPublishPerSecond=hops.get("amqp publish (confirms)", 0.0),
        redisScriptsPerSecond=hops.get("redis token bucket", 0.0),
        s3PutsPerSecond=hops.get("s3 PutObject 32 KB", 0.0),
        webhookPostsPerSecond=hops.get("httpx POST to receiver", 0.0),
    )
    used: dict[str, meter.Usage] = {}
    for part, delivered in (
        ("reference", report.reference.get("delivered")),
        ("scale", report.scale.get("delivered")),
    ):
        if f"{part}.end" in readings and delivered:
            start, end = readings[f"{part}.start"], readings[f"{part}.end"]
            used[part] = meter.usage(start, end, int(delivered))
    if not used:
        raise RuntimeError("neither the reference nor the scale part was measured")
    costs = {part: costs_of(u, idle, procs) for part, u in used.items()}
    checks = {}
    if len(used) == 2:
        checks["reference, predicted from the scale part"] = predicted_vs_measured(
            costs["scale"], used["reference"], procs
        )
        checks["scale, predicted from the reference part"] = predicted_vs_measured(
            costs["reference"], used["scale"], procs
        )
    chosen = costs.get("scale") or costs["reference"]
    return {
        "costs": msgspec.to_builtins(chosen),
        "costsFrom": "scale" if "scale" in costs else "reference",
        "ceilings": msgspec.to_builtins(ceilings),
        "usage": {part: msgspec.to_builtins(u) for part, u in used.items()},
        "costsByPart": {part: msgspec.to_builtins(c) for part, c in costs.items()},
        "checks": checks,
    }


NOTE_HOPS = (
    ("amqp consume (acks)", "consume from fila.ingest", 1.0),
    ("redis token bucket", "the bucket call", 1.0),
    ("httpx POST to receiver", "the media fetch (one HTTP round trip)", 2 / 3),
    ("s3 PutObject 32 KB", "the S3 PUT", 1.0),
    ("amqp publish (confirms)", "the publish to global.messages", 1.0),
    ("amqp consume (acks)", "the consume from global.messages", 1.0),
    ("httpx POST to receiver", "the webhook POST", 1.0),
)
"""The hops one voice note passes, with how many of them pass it (two of the three voice kinds
of the bench's mix fetch their media; inline base64 does not)."""


def composed_ceiling(report: BenchReport) -> dict[str, Any]:
    """1 / Σ(share / ceiling) over one note's hops: the limit when they all share the cores."""
    hops = {h.hop: h.perSecond for h in report.rawHops}
    if not all(hops.get(name) for name, _, _ in NOTE_HOPS):
        return {}
    seconds = sum(share / hops[name] for name, _, share in NOTE_HOPS)
    without = sum(share / hops[name] for name, what, share in NOTE_HOPS if "media" not in what)
    ceiling = 1 / seconds
    tput = report.endToEnd.get("throughputPerSecond")
    return {
        "hops": [
            {"hop": what, "ceilingPerSecond": hops[name], "perNote": round(share, 3)}
            for name, what, share in NOTE_HOPS
        ],
        "perSecond": round(ceiling, 1),
        "withoutMediaFetchPerSecond": round(1 / without, 1),
        "ratio": round(tput / ceiling, 3) if tput else None,
    }


def cpu_per_note(e2e: dict[str, Any]) -> dict[str, float]:
    """Fila's own CPU milliseconds per delivered note, by role, over the throughput run."""
    cores, window, delivered = (
        e2e.get("coresUsed"),
        e2e.get("cpuWindowSeconds"),
        e2e.get("delivered"),
    )
    if not cores or not window or not delivered:
        return {}
    out: dict[str, float] = {}
    for role in ("ingest", "delivery"):
        busy = sum(v for k, v in cores.items() if k.split("-")[0] == role)
        out[role] = round(busy * window * 1000 / delivered, 2)
    out["ingest+delivery"] = round(out["ingest"] + out["delivery"], 2)
    return out


def check_targets(report: BenchReport) -> list[TargetCheck]:
    checks: list[TargetCheck] = []
    slowest = min((h.perSecond for h in report.rawHops), default=0.0)
    tput = report.endToEnd.get("throughputPerSecond")
    ratio = (tput / slowest) if tput and slowest else None
    report.endToEnd["slowestRawHopPerSecond"] = slowest
    report.endToEnd["ratioToSlowestHop"] = round(ratio, 3) if ratio is not None else None
    checks.append(
        TargetCheck(
            name="e2e throughput / slowest raw hop (each hop measured alone)",
            value=ratio,
            target="≥ 0.6",
            met=None if ratio is None else ratio >= 0.6,
        )
    )
    composed = composed_ceiling(report)
    report.endToEnd["composedCeiling"] = composed
    to_composed = composed.get("ratio")
    checks.append(
        TargetCheck(
            name="e2e throughput / composed ceiling",
            value=to_composed,
            target="≥ 0.9",
            met=None if to_composed is None else to_composed >= 0.9,
        )
    )
    per_note = cpu_per_note(report.endToEnd)
    report.endToEnd["cpuMsPerNote"] = per_note
    both = per_note.get("ingest+delivery")
    checks.append(
        TargetCheck(
            name="Fila CPU per delivered note, ingest + delivery (ms)",
            value=both,
            target="≤ 5.5",
            met=None if both is None else both <= 5.5,
        )
    )
    p99 = (report.reference.get("latencyMs") or {}).get("p99")
    checks.append(
        TargetCheck(
            name="p99 latency at reference load (ms)",
            value=p99,
            target="< 150",
            met=None if p99 is None else p99 < 150,
        )
    )
    err = report.limiter.get("errorPercent")
    checks.append(
        TargetCheck(
            name="limiter error (%)",
            value=err,
            target="≤ 0.5",
            met=None if err is None else err <= 0.5,
        )
    )
    prop = report.propagation.get("p99Ms")
    checks.append(
        TargetCheck(
            name="config propagation p99 (ms)",
            value=prop,
            target="< 100",
            met=None if prop is None else prop < 100,
        )
    )
    return checks


async def run_bench(
    base: Settings, *, quick: bool, workers: int, limiter_procs: int, console: Console
) -> BenchReport:
    profile = QUICK if quick else FULL
    report = BenchReport(
        startedAt=datetime.now(UTC).isoformat(timespec="seconds"),
        mode="quick" if quick else "full",
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "workers": f"{workers} ingest + {workers} delivery",
        },
    )
    steps: list[tuple[str, str]] = [
        ("namespaces", "isolated vhost, prefix, bucket, database"),
        ("receiver", "webhook receiver process"),
        ("amqp", "raw: aio-pika publish/consume"),
        ("redis", "raw: token bucket"),
        ("s3", "raw: S3 PutObject 32 KB"),
        ("http", "raw: httpx POST"),
        ("fleet", "control plane + workers"),
        ("reference", "e2e at reference load"),
        ("saturation", "e2e throughput"),
        ("fairness", "fairness (one instance at 10×)"),
        ("propagation", "config propagation"),
        ("limiter", "limiter accuracy"),
        ("scale", "5,000 instances at 10× the reference"),
    ]
    with Progress(
        TextColumn("[bold]bench[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(steps[0][1], total=len(steps))

        def step(n: int) -> None:
            bar.update(task, completed=n, description=steps[min(n, len(steps) - 1)][1])

        async with isolated(base) as settings:
            step(1)
            bench = Bench(settings, profile, workers, limiter_procs)
            stub_port = int(settings.evolution_url.rsplit(":", 1)[1])
            stub = EvolutionStub(settings.evolution_api_key, stub_port)
            try:
                await bench.start_receiver()
                step(2)
                hops: list[tuple[int, Callable[[], Awaitable[Any]]]] = [
                    (3, lambda: rawhops.amqp_publish_consume(settings, profile.hop_seconds)),
                    (4, lambda: rawhops.redis_token_bucket(settings, profile.hop_seconds)),
                    (5, lambda: rawhops.s3_put(settings, profile.hop_seconds)),
                    (6, lambda: rawhops.http_post(bench.receiver_url, profile.hop_seconds)),
                ]
                for n, hop in hops:
                    result = await hop()
                    report.rawHops.extend(result if isinstance(result, list) else [result])
                    step(n)
                await bench.start_fleet()
                idle = await bench.idle(5.0)
                step(7)

                async def in_process(part: Callable[[EvolutionStub], Awaitable[Any]]) -> Any:
                    async with stub:
                        return await part(stub)

                parts: list[tuple[int, str, Callable[[], Awaitable[Any]]]] = [
                    (8, "reference", lambda: in_process(bench.reference)),
                    (9, "endToEnd", lambda: bench.saturation(stub_port)),
                    (10, "fairness", lambda: in_process(bench.fairness)),
                    (11, "propagation", bench.propagation),
                    (12, "limiter", bench.limiter),
                    (13, "scale", lambda: bench.scale(stub_port)),
                ]
                for n, name, part in parts:
                    try:
                        setattr(report, name, await part())
                    except Exception as exc:
                        report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    step(n)
                try:
                    report.capacity = capacity_section(report, bench.readings, idle, workers)
                except Exception as exc:
                    report.errors.append(f"capacity: {type(exc).__name__}: {exc}")
            finally:
                stopped = await bench.procs.stop_all()
                if bench.procs.killed:
                    report.errors.append(f"needed SIGKILL: {', '.join(bench.procs.killed)}")
                report.machine["exitCodes"] = stopped
                await bench.close()
    report.targets = check_targets(report)
    return report


def scale_rows(sc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The 5,000-instance run: delivery, latency, Redis per instance, fleet pages."""
    lat = sc.get("latencyMs") or {}
    page = sc.get("fleetPage") or {}
    return [
        ("scale: delivered / voice notes", _pair(sc, "delivered", "voiceNotes")),
        ("scale: latency p50 / p99 (ms)", f"{_fmt(lat.get('p50'))} / {_fmt(lat.get('p99'))}"),
        ("scale: Redis bytes per instance", sc.get("redisBytesPerInstance")),
        ("scale: fleet page p50 / p99 (ms)", _pair(page, "p50Ms", "p99Ms")),
        ("scale: fleet page bytes (max)", page.get("maxBytes")),
    ]


def _triple(cpu: dict[str, float]) -> str:
    return " / ".join(_fmt(cpu.get(k)) for k in ("ingest", "delivery", "ingest+delivery"))


def _pair(d: dict[str, Any], a: str, b: str) -> str:
    return f"{d.get(a, '—')} / {d.get(b, '—')}"


def fairness_rows(f: dict[str, Any]) -> list[tuple[str, Any]]:
    """The fairness figures: burst, contention, weights, end to end."""
    burst, con, wts, e2e = (f.get(k) or {} for k in ("burst", "contention", "weights", "endToEnd"))
    return [
        ("fairness: burst admitted / sent", _pair(burst, "admitted", "sent")),
        ("fairness: worst normal share", con.get("worstNormalShare")),
        ("fairness: Jain index over normals", con.get("jainNormals")),
        ("fairness: hot admitted / sent", _pair(con, "hotAdmitted", "hotSent")),
        ("fairness: admitted / capacity + refill·t", _pair(con, "admitted", "expected")),
        ("fairness: token conservation error (%)", con.get("conservationErrorPercent")),
        ("fairness: weight 3 ÷ weight 1", wts.get("ratio")),
        ("fairness e2e: worst other share", e2e.get("worstOtherShare")),
        ("fairness e2e: Jain index over the others", e2e.get("jainOthers")),
        ("fairness e2e: hot sent / delivered", _pair(e2e, "hotSent", "hotDelivered")),
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_report(console: Console, report: BenchReport) -> None:
    hops = Table("raw hop", "ops/s", "ops", "concurrency", "errors", title="Raw ceilings")
    for h in report.rawHops:
        hops.add_row(
            h.hop, _fmt(h.perSecond), _fmt(h.operations), str(h.concurrency), str(h.errors)
        )
    console.print(hops)
    figures = Table("measure", "value", title=f"Fila ({report.mode})")
    ref = report.reference
    lat = ref.get("latencyMs") or {}
    e2e = report.endToEnd
    composed = e2e.get("composedCeiling") or {}
    rows: list[tuple[str, Any]] = [
        (
            "reference load: sent / voice notes / delivered",
            f"{ref.get('sent', '—')} / {ref.get('voiceNotes', '—')} / {ref.get('delivered', '—')}",
        ),
        (
            "reference latency p50 / p95 / p99 (ms)",
            f"{_fmt(lat.get('p50'))} / {_fmt(lat.get('p95'))} / {_fmt(lat.get('p99'))}",
        ),
        ("e2e offered (events/s)", e2e.get("offeredPerSecond")),
        ("e2e delivered / sent", f"{e2e.get('delivered', '—')} / {e2e.get('sent', '—')}"),
        ("e2e throughput (deliveries/s)", e2e.get("throughputPerSecond")),
        ("slowest raw hop (ops/s)", e2e.get("slowestRawHopPerSecond")),
        ("ratio to slowest raw hop (hops measured alone)", e2e.get("ratioToSlowestHop")),
        ("composed ceiling of one note's hops (/s)", composed.get("perSecond")),
        ("  without the media fetch (/s)", composed.get("withoutMediaFetchPerSecond")),
        ("ratio to the composed ceiling", composed.get("ratio")),
        ("CPU per note: ingest / delivery / both (ms)", _triple(e2e.get("cpuMsPerNote") or {})),
        (
            "limiter admitted / expected",
            f"{report.limiter.get('admitted', '—')} / {report.limiter.get('expected', '—')}",
        ),
        ("limiter error (%)", report.limiter.get("errorPercent")),
        *fairness_rows(report.fairness),
        *scale_rows(report.scale),
        (
            "propagation p50 / p99 (ms)",
            f"{_fmt(report.propagation.get('p50Ms'))} / {_fmt(report.propagation.get('p99Ms'))}",
        ),
    ]
    for name, value in rows:
        figures.add_row(name, value if isinstance(value, str) else _fmt(value))
    console.print(figures)
    for part, title in (
        (report.endToEnd, "CPU during the e2e throughput run"),
        (report.scale, "CPU during the 5,000-instance run"),
    ):
        cores = part.get("coresUsed") or {}
        if cores:
            cpu = Table("process tree", "cores busy", title=title)
            for name, share in sorted(cores.items(), key=lambda kv: -kv[1]):
                cpu.add_row(name, f"{share:.2f}")
            console.print(cpu)
    for name, rows_ in (report.capacity.get("checks") or {}).items():
        check = Table("figure", "predicted", "measured", "error", title=f"capacity model: {name}")
        for figure, row in rows_.items():
            err = row["errorPercent"]
            colour = "green" if abs(err) <= 20 else "red"
            check.add_row(
                figure, f"{row['predicted']:g}", f"{row['measured']:g}", f"[{colour}]{err:+.1f} %"
            )
        console.print(check)
    targets = Table("target", "measured", "wanted", "met", title="Targets")
    for t in report.targets:
        verdict = (
            "[green]yes[/green]"
            if t.met
            else ("[red]MISSED[/red]" if t.met is False else "not measured")
        )
        targets.add_row(t.name, _fmt(t.value), t.target, verdict)
    console.print(targets)
    for error in report.errors:
        console.print(f"[red]error:[/red] {error}")
