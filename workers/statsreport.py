"""`queue.stats` and `filter.applied`, emitted by one delivery worker at a time.

Leadership is a Redis lock with expiry, renewed each round, so a dead leader is replaced
within a few intervals and the reports never multiply with the fleet size.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from fila import logging as flog
from fila import stats
from fila.keys import Keys
from fila.lease import Lease
from fila.settings import Settings
from fila.topology import GLOBAL_QUEUE, queue_depth
from workers import monitoring
from workers.fleet import bounded

log = flog.get("statsreport")

FILTER_FIELDS = (stats.TOO_SHORT, stats.TOO_LONG, stats.PROCESSED)


class Snapshot(msgspec.Struct, kw_only=True):
    total: dict[str, int] = msgspec.field(default_factory=dict)
    byInstance: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)


def _filter_counts(counts: dict[str, int]) -> dict[str, int]:
    return {field: int(counts.get(field, 0)) for field in FILTER_FIELDS}


def _delta(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {field: now.get(field, 0) - before.get(field, 0) for field in FILTER_FIELDS}


class StatsReporter:
    """Every `stats_interval_seconds`, if leader: queue.stats, and filter.applied on change."""

    def __init__(self, settings: Settings, redis: aioredis.Redis, channel: AbstractChannel) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.channel = channel
        self.counters = stats.Counters(
            redis, self.keys, settings.timezone, settings.fleet_stats_retention_days
        )
        interval = settings.stats_interval_seconds
        self.lease = Lease(redis, self.keys.lock("stats"), int(max(interval * 3, 5.0) * 1000))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stats-report")

    async def _run(self) -> None:
        interval = self.settings.stats_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                if await self.lease.hold():
                    await self.report()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stats report failed", error=str(exc))

    async def report(self) -> None:
        counts = await self.counters.global_counts()
        await monitoring.publish(
            self.channel,
            self.settings,
            monitoring.event(
                self.settings,
                "queue.stats",
                {
                    "queueSize": await queue_depth(self.channel, GLOBAL_QUEUE),
                    "processedCount": counts.get(stats.DELIVERED, 0),
                    "processedToday": await self.counters.processed_today(),
                    "audioFilterStats": _filter_counts(counts),
                },
            ),
        )
        await self._filter_applied(counts)

    async def _filter_applied(self, counts: dict[str, int]) -> None:
        raw = await self.redis.get(self.keys.filter_snapshot)
        before = msgspec.json.decode(raw, type=Snapshot) if raw else Snapshot()
        instances = list(await self.counters.instances())
        per_instance = await self.counters.instance_counts(instances)
        now = Snapshot(
            total=_filter_counts(counts),
            byInstance={name: _filter_counts(c) for name, c in per_instance.items()},
        )
        total = _delta(now.total, before.total)
        if not any(total.values()):
            return
        by_instance: dict[str, Any] = {}
        for name, current in now.byInstance.items():
            moved = _delta(current, before.byInstance.get(name, {}))
            if any(moved.values()):
                by_instance[name] = moved
        queued = await monitoring.publish(
            self.channel,
            self.settings,
            monitoring.event(self.settings, "filter.applied", {**total, "byInstance": by_instance}),
        )
        if queued:  # otherwise the next report carries this period's changes too
            await self.redis.set(self.keys.filter_snapshot, msgspec.json.encode(now))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        # Bounded: a hung Redis must not hold the exit; the lock then expires with its TTL.
        await bounded(self.lease.release(), "stats lock")
