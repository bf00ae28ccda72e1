"""`fila worker ingest`: consume Evolution API events and run each through the pipeline.

This module is the AMQP and fleet plumbing (consume, pause, resume, graceful stop); what happens
to an event is `workers.pipeline`.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import redis.asyncio as aioredis
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from fila import httptransport, startup, topology
from fila import logging as flog
from fila.configstore import ConfigStore
from fila.httpcalls import Calls
from fila.keys import Keys
from fila.models import ControlMessage
from fila.settings import Settings
from workers import fleet as fleet_mod
from workers.enqueue import Publisher
from workers.filtercache import ConfigCache
from workers.holds import Holds
from workers.instances import InstanceBinder
from workers.media import MediaFetcher
from workers.pipeline import Pipeline
from workers.storage import AudioStore

log = flog.get("ingest")

_OK = frozenset(
    {"queued", "tooShort", "tooLong", "nonAudio", "duplicate", "rateLimited", "deferred", "retry"}
)


class IngestConsumer:
    """The ingest role's `Consumer` for `workers.fleet`."""

    def __init__(self, settings: Settings, redis: aioredis.Redis, fleet: fleet_mod.Fleet) -> None:
        self.settings = settings
        self.redis = redis
        self.fleet = fleet
        self.config = ConfigCache(
            ConfigStore(redis, Keys(settings.redis_prefix), settings),
            settings.filter_cache_ttl_seconds,
        )
        self.store = AudioStore(settings)
        limits = httpx.Limits(max_connections=max(10, settings.ingest_concurrency))
        timeout = httpx.Timeout(30.0, connect=5.0)
        self.http = httptransport.client(limits, timeout)
        self.media_calls = Calls(limits, timeout)
        """Every note's media fetch; `http` serves the instance binder's occasional calls."""
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.queue: AbstractQueue | None = None
        self.pipeline: Pipeline | None = None
        self.tag: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._consume_lock = asyncio.Lock()
        self.binder: InstanceBinder | None = None
        self._paused = False
        self._stopping = False
        self.holds: Holds | None = None

    async def start(self) -> None:
        self.connection = await startup.robust_rabbitmq(self.settings)
        publish_channel = await self.connection.channel(publisher_confirms=True)
        publisher = Publisher(publish_channel, self.settings)
        await publisher.declare()
        await self.store.open()
        fetcher = MediaFetcher(self.settings, self.media_calls)
        self.holds = Holds(
            self.settings, self.redis, self.fleet.info, publisher.monitoring, self._sync
        )
        self.holds.register("s3", self.store.probe)
        self.holds.register("redis", self.redis.ping)
        self.holds.register("evolution", fetcher.probe_evolution)
        self.pipeline = Pipeline(
            self.settings,
            self.redis,
            publisher,
            self.config,
            fetcher,
            self.store,
            self.holds,
        )
        self.channel = await self.connection.channel()
        await self.channel.set_qos(prefetch_count=self.settings.ingest_concurrency)
        self.queue = await topology.declare_ingest(self.channel, self.settings)
        if self.settings.evolution_rabbitmq_mode == "instance":  # one exchange per instance
            self.binder = InstanceBinder(self.settings, self.connection, self.http)
            await self.binder.start()
        # A fleet-wide pause outlives restarts: take nothing then.
        self._paused = bool(await self.redis.exists(Keys(self.settings.redis_prefix).paused))
        await self._sync()

    async def pause(self) -> None:
        """basic.cancel: new events stay in RabbitMQ; those held finish normally."""
        self._paused = True
        await self._sync()

    async def resume(self) -> None:
        self._paused = False
        await self._sync()

    async def _sync(self) -> None:
        """Consume only while not paused, not stopping and not holding for a dependency."""
        async with self._consume_lock:
            holding = self.holds is not None and self.holds.active
            want = not (self._paused or self._stopping or holding)
            if self.queue is not None and self.tag is not None and not want:
                tag, self.tag = self.tag, None
                await self.queue.cancel(tag)
                log.info("consumer paused" if not holding else "consumer holding")
            elif self.queue is not None and self.tag is None and want:
                self.tag = await self.queue.consume(self._on_message)
                log.info("consuming", queue=self.queue.name)

    async def apply_config(self, message: ControlMessage) -> None:
        self.config.invalidate(message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._handle(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        assert self.pipeline is not None
        with self.fleet.in_flight():
            try:
                outcome = await self.pipeline.process(
                    message.body, dict(message.headers or {}), message.redelivered or False
                )
            except asyncio.CancelledError:
                raise  # left unacked: RabbitMQ requeues it when the channel closes
            except Exception as exc:
                # Not even a retry could be published: hand it back to RabbitMQ, gently.
                log.error("event handed back to RabbitMQ", error=f"{type(exc).__name__}: {exc}")
                self.fleet.record(False)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
            try:
                await message.ack()
            except Exception as exc:
                # The channel went away: RabbitMQ redelivers it and the idempotency key
                # recognises it as already queued.
                log.warning("ack lost with the channel", error=f"{type(exc).__name__}: {exc}")
            if outcome != "held":
                self.fleet.record(outcome in _OK)

    async def stop(self, grace: float) -> None:
        self._stopping = True
        if self.holds is not None:
            await self.holds.close()
        try:
            await asyncio.wait_for(self.pause(), timeout=10)
        except Exception as exc:  # a dead connection: closing below releases everything anyway
            log.warning("consumer cancel failed", error=f"{type(exc).__name__}: {exc}")
        if self.tasks:
            log.info("finishing in-flight events", count=len(self.tasks), grace=grace)
            await asyncio.wait(set(self.tasks), timeout=grace)
        leftover = set(self.tasks)
        for task in leftover:
            task.cancel()
        if leftover:
            log.warning("requeueing unfinished events", count=len(leftover))
            await asyncio.gather(*leftover, return_exceptions=True)
        if self.binder is not None:
            await self.binder.stop()
        if self.pipeline is not None:
            await self.pipeline.flush(timeout=5.0)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        with contextlib.suppress(Exception):
            await self.store.close()
        await self.http.aclose()
        await self.media_calls.aclose()


async def build(
    settings: Settings, redis: aioredis.Redis, fleet: fleet_mod.Fleet
) -> IngestConsumer:
    return IngestConsumer(settings, redis, fleet)


def main() -> None:
    fleet_mod.run("ingest", build)
