"""A worker process as a member of the fleet: registry, heartbeat, control channel, shutdown.

Ingest and delivery workers differ only in their `Consumer`; everything that makes them
operable (pause, resume, drain, live config, SIGTERM) lives here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import msgspec
import redis.asyncio as aioredis
import uvloop

from fila import logging as flog
from fila import redisconn, startup
from fila.configstore import decode_control
from fila.keys import Keys
from fila.models import ControlMessage, WorkerInfo, WorkerRole, encode
from fila.settings import Settings, SettingsError, get_settings

log = flog.get("fleet")

STOP_STEP_SECONDS = 3.0
"""Longest a stopping worker waits on one Redis step (deregistering, releasing a lock, closing)."""


async def bounded(step: Awaitable[object], what: str, seconds: float = STOP_STEP_SECONDS) -> None:
    """Await a best-effort shutdown step for at most `seconds`: the client has no read timeout,
    so a Redis that accepts but never answers would otherwise hold the exit until SIGKILL."""
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        log.warning("shutdown step timed out", step=what, seconds=seconds)
    except Exception as exc:
        log.warning("shutdown step failed", step=what, error=f"{type(exc).__name__}: {exc}")


class Consumer(Protocol):
    """What a worker role implements; the fleet calls these."""

    async def start(self) -> None:
        """Connect and begin consuming (unless the fleet starts paused)."""

    async def pause(self) -> None:
        """Stop taking new messages; in-flight ones finish."""

    async def resume(self) -> None: ...

    async def apply_config(self, message: ControlMessage) -> None:
        """Drop cached configuration named by `message` (re-read on next use)."""

    async def stop(self, grace: float) -> None:
        """Stop consuming, finish in-flight work within `grace` s, requeue the rest, close."""


class Fleet:
    """Registration and control of one worker process."""

    def __init__(self, settings: Settings, redis: aioredis.Redis, role: WorkerRole) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.role: WorkerRole = role
        self.info = WorkerInfo(
            id=f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}",
            role=role,
            pid=os.getpid(),
            host=socket.gethostname(),
            startedAt=time.time(),
            lastBeat=time.time(),
        )
        self.stopping = asyncio.Event()
        self.consumer: Consumer | None = None
        self._fleet_paused = False
        """Paused by a fleet-wide order (remembered in Redis), not by one aimed at a role or us."""
        self._seen_seq = 0
        """The newest control message received, for us or not: a higher seq in Redis was missed."""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def id(self) -> str:
        return self.info.id

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a message as held by this worker while the block runs."""
        self.info.inFlight += 1
        try:
            yield
        finally:
            self.info.inFlight -= 1

    def record(self, ok: bool) -> None:
        if ok:
            self.info.processed += 1
        else:
            self.info.failed += 1

    def request_stop(self) -> None:
        self.info.state = "stopping"
        self.stopping.set()

    async def start(self, consumer: Consumer) -> None:
        self.consumer = consumer
        if await self.redis.exists(self.keys.paused):
            self.info.state = "paused"
            self._fleet_paused = True
        self._seen_seq = int(await self.redis.get(self.keys.config_seq) or 0)
        await self.beat()
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._listen(), name="control"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # a cancelled listener closes its pub/sub connection on the way out
            await asyncio.wait(self._tasks, timeout=STOP_STEP_SECONDS)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self.keys.workers, self.id)
        pipe.delete(self.keys.worker(self.id))
        await bounded(pipe.execute(), "deregister")  # else the entry expires with its TTL

    async def beat(self) -> None:
        self.info.lastBeat = time.time()
        ttl = int(self.settings.worker_ttl_seconds * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.worker(self.id), encode(self.info), px=ttl)
        pipe.zadd(self.keys.workers, {self.id: self.info.lastBeat})
        pipe.get(self.keys.config_seq)
        latest = int((await pipe.execute())[-1] or 0)
        if latest > self._seen_seq:
            # Control messages went by unseen (a pub/sub reconnect can be silent): catch up.
            self._seen_seq = latest
            log.warning("control messages missed, catching up", seq=latest)
            await self._catch_up()

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:
                log.warning("heartbeat failed", error=str(exc))
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def _listen(self) -> None:
        """Follow the control channel, reconnecting (and re-reading config) after a break."""
        first = True
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.control_channel)
                if not first:
                    await self._catch_up()  # messages may have been missed while disconnected
                first = False
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    try:
                        message = decode_control(raw["data"])
                    except msgspec.DecodeError:
                        log.warning("bad control message ignored")
                        continue
                    await self.handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("control channel lost, reconnecting", error=str(exc))
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _catch_up(self) -> None:
        """Re-read all configuration and follow the fleet-wide pause mark: nothing stays missed."""
        if self.consumer is None:
            return
        await self.consumer.apply_config(ControlMessage(seq=0, kind="config", scope="all"))
        await self._follow_fleet_pause()

    async def _follow_fleet_pause(self) -> None:
        """A fleet-wide pause or resume sent while unsubscribed is caught up from its Redis mark."""
        if self.consumer is None:
            return
        paused = bool(await self.redis.exists(self.keys.paused))
        if paused and self.info.state == "running":
            self.info.state, self._fleet_paused = "paused", True
            await self.consumer.pause()
            log.info("fleet-wide pause caught up")
        elif not paused and self._fleet_paused and self.info.state == "paused":
            self.info.state, self._fleet_paused = "running", False
            await self.consumer.resume()
            log.info("fleet-wide resume caught up")
        else:
            return
        await self.beat()

    def _concerns(self, message: ControlMessage) -> bool:
        if message.workerId and message.workerId != self.id:
            return False
        return not (message.role and message.role != self.role)

    async def handle(self, message: ControlMessage) -> None:
        self._seen_seq = max(self._seen_seq, message.seq)
        if not self._concerns(message) or self.consumer is None:
            return
        if message.kind == "config":
            await self.consumer.apply_config(message)
        elif message.kind == "pause" and self.info.state == "running":
            self.info.state = "paused"
            self._fleet_paused = not (message.role or message.workerId)
            await self.consumer.pause()
        elif message.kind == "resume" and self.info.state == "paused":
            self.info.state = "running"
            self._fleet_paused = False
            await self.consumer.resume()
        elif message.kind == "drain":
            self.info.state = "draining"
            await self.consumer.pause()
            self._tasks.append(asyncio.create_task(self._drain(), name="drain"))
        elif message.kind == "shutdown":
            self.request_stop()
        self.info.appliedSeq = max(self.info.appliedSeq, message.seq)
        self.info.appliedAt = time.time()
        await self.beat()
        log.info("control applied", kind=message.kind, scope=message.scope, seq=message.seq)

    async def _drain(self) -> None:
        """Finish what is held, then leave the fleet."""
        while self.info.inFlight > 0:  # noqa: ASYNC110 - in-flight count is plain state
            await asyncio.sleep(0.05)
        self.request_stop()


async def alive_here(settings: Settings, role: WorkerRole) -> bool:
    """Whether a `role` worker on this host beat within its TTL: a container's health check."""
    redis = redisconn.connect(settings, max_connections=1)
    keys = Keys(settings.redis_prefix)
    prefix = f"{role}-{socket.gethostname()}-"
    try:
        ids = [w.decode() for w in await redis.zrange(keys.workers, 0, -1) if isinstance(w, bytes)]
        mine = [w for w in ids if w.startswith(prefix)]
        return bool(mine) and any(await redis.mget([keys.worker(w) for w in mine]))
    finally:
        await redis.aclose()


async def serve(
    settings: Settings,
    role: WorkerRole,
    build: Callable[[Settings, aioredis.Redis, Fleet], Awaitable[Consumer]],
    grace: float = 30.0,
) -> None:
    """Run one worker process until SIGTERM/SIGINT or a shutdown/drain order."""
    redis = redisconn.connect(settings)
    fleet = Fleet(settings, redis, role)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, fleet.request_stop)
    consumer = await build(settings, redis, fleet)
    await consumer.start()
    await fleet.start(consumer)
    if fleet.info.state == "paused":
        await consumer.pause()
    log.info("worker started", worker=fleet.id, role=role)
    try:
        await fleet.stopping.wait()
    finally:
        log.info("worker stopping", worker=fleet.id, in_flight=fleet.info.inFlight)
        await consumer.stop(grace)
        await fleet.stop()
        await bounded(redis.aclose(), "close redis")
        log.info("worker stopped", worker=fleet.id)


def run(
    role: WorkerRole,
    build: Callable[[Settings, aioredis.Redis, Fleet], Awaitable[Consumer]],
) -> None:
    """Process entry point: settings, logging, uvloop, then `serve`."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise SystemExit(f"error: {exc}") from None
    flog.setup(settings, f"worker-{role}")
    try:
        uvloop.run(_serve_when_dependencies_answer(settings, role, build))
    except startup.Unreachable as exc:
        raise SystemExit(f"error: {exc}") from None


async def _serve_when_dependencies_answer(
    settings: Settings,
    role: WorkerRole,
    build: Callable[[Settings, aioredis.Redis, Fleet], Awaitable[Consumer]],
) -> None:
    """A dead Redis or RabbitMQ stops the start in one line, not a traceback from deep inside."""
    await startup.redis(settings)
    await startup.rabbitmq(settings)
    await serve(settings, role, build)
