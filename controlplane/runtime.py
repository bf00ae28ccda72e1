"""Connections the control plane holds for its lifetime, shared by every domain service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from piccolo.engine.postgres import PostgresEngine

from controlplane.cleanup.schemas import Schedule
from controlplane.db import close_engine, open_engine
from controlplane.fleet.snapshot import RowSnapshot
from controlplane.ingest.budget import ByteBudget
from controlplane.queuereads import QueueReads
from fila import logging as flog
from fila import redisconn, topology
from fila import s3 as s3_clients
from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.ratelimit import TokenBucket
from fila.settings import Settings
from fila.stats import Counters

log = flog.get("controlplane.runtime")


class CleanupCron(Protocol):
    """What the routes need of this process's S3 cleanup cron (controlplane.cleanup.scheduler)."""

    async def apply(self, schedule: Schedule) -> None: ...

    def next_run(self) -> dt.datetime | None: ...


RateSample = tuple[float, int, int, float, float]
"""When (monotonic), voice notes queued and delivered by then, rates in and out per second."""


@dataclass
class Runtime:
    """Redis, RabbitMQ (confirming channel), PostgreSQL pool and S3 client of one process."""

    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    config: ConfigStore
    counters: Counters
    bucket: TokenBucket
    amqp: AbstractRobustConnection
    channel: AbstractChannel
    """Publisher confirms on: a publish returns once the broker has the message."""
    engine: PostgresEngine
    s3: Any
    http: httpx.AsyncClient
    fleet_rows: RowSnapshot
    """The fleet table's rows, refreshed in the background while pages are asked for."""
    queue_reads: QueueReads
    """Queue depth reads over one long-lived channel."""
    ingest_budget: ByteBudget
    """Bytes of HTTP ingest bodies held until RabbitMQ confirms them."""
    cleanup_scheduler: CleanupCron | None = None
    """The S3 cleanup cron, once the app's lifespan started it (its PUT reschedules it)."""
    fleet_rates: RateSample | None = None
    """The fleet's last rate sample (controlplane.fleet.service)."""
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def close(self) -> None:
        await self._stack.aclose()


CLOSE_TIMEOUT = 10.0


async def bounded(
    name: str, close: Callable[[], Awaitable[Any]], timeout: float = CLOSE_TIMEOUT
) -> None:
    """Close one resource without letting a stuck peer hold the shutdown forever."""
    try:
        await asyncio.wait_for(close(), timeout)
    except Exception as exc:
        log.warning("close failed", resource=name, error=str(exc) or type(exc).__name__)


async def _enter(stack: contextlib.AsyncExitStack, name: str, manager: Any) -> Any:
    value = await manager.__aenter__()
    stack.push_async_callback(bounded, name, lambda: manager.__aexit__(None, None, None))
    return value


async def open_runtime(settings: Settings) -> Runtime:
    """Connect to everything; whatever was opened is closed again if a later step fails."""
    stack = contextlib.AsyncExitStack()
    try:
        redis = redisconn.connect(settings)
        stack.push_async_callback(bounded, "redis", redis.aclose)
        keys = Keys(settings.redis_prefix)
        amqp = await topology.connect(settings)
        stack.push_async_callback(bounded, "rabbitmq", amqp.close)
        channel = await amqp.channel(publisher_confirms=True)
        await topology.declare_all(channel, settings)
        engine = await open_engine(settings.database_url)
        stack.push_async_callback(close_engine, engine)
        s3 = await _enter(stack, "s3", s3_clients.client(settings))
        http = await _enter(stack, "http", httpx.AsyncClient(timeout=10.0))
    except BaseException:
        await stack.aclose()
        raise
    config = ConfigStore(redis, keys, settings)
    counters = Counters(redis, keys, settings.timezone, settings.fleet_stats_retention_days)
    bucket = TokenBucket(redis, keys)
    fleet_rows = RowSnapshot(settings, config, counters, bucket)
    stack.push_async_callback(fleet_rows.close)
    return Runtime(
        settings=settings,
        redis=redis,
        keys=keys,
        config=config,
        counters=counters,
        bucket=bucket,
        fleet_rows=fleet_rows,
        queue_reads=QueueReads(amqp),
        ingest_budget=ByteBudget(
            settings.ingest_http_buffer_bytes, settings.ingest_http_wait_seconds
        ),
        amqp=amqp,
        channel=channel,
        engine=engine,
        s3=s3,
        http=http,
        _stack=stack,
    )
