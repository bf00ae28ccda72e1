"""The bench's harness: isolated fleet processes, a receiver, and readings to measure with."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import msgspec

from fila import redisconn, topology
from fila.dev import services
from fila.keys import Keys
from fila.models import WorkerInfo
from fila.settings import Settings
from simulator import fleetup, meter
from simulator.benchenv import free_port
from simulator.procs import Child, ProcessGroup


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
        await fleetup.start(
            self.procs,
            self.s,
            ingest=self.workers,
            delivery=self.workers,
            receiver_url=self.receiver_url,
            monitoring=False,
            redis=self.redis,
        )

    async def start_simulator(
        self, name: str, stub_port: int, instances: int, rate: float, seconds: float, *args: str
    ) -> tuple[Child, Path]:
        """`fila simulate` of `instances` at `rate` a minute for `seconds` (and `args`) as a
        process of its own, its media from the stub on `stub_port`, lingering for the drain;
        the process and where its --json summary goes."""
        out = Path(self.procs.log_dir) / f"{name}.json"
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(out.unlink)
        sim = await self.procs.start(
            f"simulate-{name}",
            [
                "simulate",
                "--instances",
                str(instances),
                "--rate",
                str(rate),
                "--duration",
                str(seconds),
                *args,
                "--stub-port",
                str(stub_port),
                "--linger",
                str(self.p.drain_seconds + 30),
                "--json",
                str(out),
            ],
        )
        return sim, out

    async def simulator_summary(self, sim: Child, out: Path, timeout: float) -> bytes:
        """The summary a simulator from `start_simulator` writes when it has sent its load;
        fails when it exits first or is not done within `timeout`."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(out.exists):
            if not sim.alive:
                raise RuntimeError(f"the simulator exited:\n{sim.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not finish")
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.2)
        return await asyncio.to_thread(out.read_bytes)

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
