"""A worker's dependency holds: stop consuming while S3, Redis, Evolution API or the receiver is
down, probe it on a schedule, resume by itself.

An outage belongs to the dependency, not to the messages that met it: they go back to their
queue without spending an attempt, and operators get one `queue.hold` event at each end.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import redis.asyncio as aioredis
import redis.exceptions

from fila import logging as flog
from fila.holds import HOLD_EVENT, Dependency, DependencyHold, hold_text
from fila.models import MonitoringEvent, WorkerInfo
from fila.settings import Settings

log = flog.get("holds")

Probe = Callable[[], Awaitable[Any]]
"""Raises while the dependency is still down."""
Announce = Callable[[MonitoringEvent], Awaitable[Any]]

REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)
"""Redis errors that mean the server, not the command, is the problem."""


def hold_key(prefix: str, dependency: Dependency) -> str:
    """Sorted set worker id → last sign of life, of the workers holding for `dependency`."""
    return f"{prefix}hold:{dependency}"


def redis_down(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says Redis itself is unreachable."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, REDIS_DOWN):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Holds:
    """The holds of one worker process; `on_change` re-evaluates whether it should consume."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        info: WorkerInfo,
        announce: Announce,
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.info = info
        self.announce = announce
        self.on_change = on_change
        self.probe_seconds = settings.hold_probe_seconds
        self._ttl = max(30.0, 4 * settings.hold_probe_seconds)
        self._probes: dict[Dependency, Probe] = {}
        self._held: dict[Dependency, DependencyHold] = {}
        self._tasks: dict[Dependency, asyncio.Task[None]] = {}

    def register(self, dependency: Dependency, probe: Probe) -> None:
        """How to tell that `dependency` is back; without one the hold ends only by `release`."""
        self._probes[dependency] = probe

    @property
    def active(self) -> bool:
        return bool(self._held)

    def held(self, dependency: Dependency) -> bool:
        return dependency in self._held

    def first(self) -> DependencyHold | None:
        return next(iter(self._held.values()), None)

    def trip(self, dependency: Dependency, detail: str) -> None:
        """Start holding for `dependency` (a no-op while already held: one hold per outage)."""
        if dependency in self._held:
            return
        hold = DependencyHold(dependency=dependency, since=time.time(), detail=detail[:300])
        self._held[dependency] = hold
        self._show()
        log.warning("holding: dependency unreachable", dependency=dependency, detail=detail[:300])
        self._tasks[dependency] = asyncio.create_task(self._watch(hold), name=f"hold-{dependency}")

    async def release(self, dependency: Dependency) -> None:
        """End the hold: consume again and announce it (once fleet-wide)."""
        hold = self._held.pop(dependency, None)
        if hold is None:
            return
        task = self._tasks.pop(dependency, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._show()
        held = time.time() - hold.since
        log.info("hold ended, consuming again", dependency=dependency, seconds=round(held, 1))
        await self._changed()
        if await self._fleet_edge(hold, "ended"):
            await self._announce(hold, "ended", held)

    async def close(self) -> None:
        """Stop probing (at shutdown); holds are not announced as ended."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _show(self) -> None:
        """What the next heartbeat says: `/workers`, the TUI and /metrics read it from there."""
        self.info.holds = list(self._held.values())
        first = self.first()
        self.info.holding = hold_text(first, self.settings.timezone) if first else ""

    async def _changed(self) -> None:
        try:
            await self.on_change()
        except Exception as exc:  # the gate loop or the next change tries again
            log.warning("consumer gate not updated", error=f"{type(exc).__name__}: {exc}")

    async def _watch(self, hold: DependencyHold) -> None:
        dependency = hold.dependency
        await self._changed()
        if await self._fleet_edge(hold, "started"):
            await self._announce(hold, "started", 0.0)
        probe = self._probes.get(dependency)
        while dependency in self._held:
            await asyncio.sleep(self.probe_seconds)
            await self._fleet_edge(hold, "still")
            if probe is None:
                continue
            try:
                async with asyncio.timeout(max(5.0, self.probe_seconds)):
                    await probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("still unreachable", dependency=dependency, error=str(exc)[:200])
                continue
            await self.release(dependency)

    async def _fleet_edge(
        self, hold: DependencyHold, edge: Literal["started", "still", "ended"]
    ) -> bool:
        """True when this worker is the first to hold (started) or the last to stop (ended).

        A Redis hold cannot be agreed on through Redis: each worker announces its own.
        """
        if hold.dependency == "redis":
            return edge != "still"
        key = hold_key(self.settings.redis_prefix, hold.dependency)
        now = time.time()
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", now - self._ttl)
            if edge == "ended":
                pipe.zrem(key, self.info.id)
            else:
                pipe.zadd(key, {self.info.id: now})
            pipe.zcard(key)
            pipe.expire(key, int(self._ttl) + 1)
            _, changed, count, _ = await pipe.execute()
        except Exception as exc:
            log.warning("hold not shared with the fleet", error=f"{type(exc).__name__}: {exc}")
            return edge != "still"
        if edge == "started":
            return bool(changed) and int(count) == 1
        return edge == "ended" and bool(changed) and int(count) == 0

    async def _announce(self, hold: DependencyHold, state: str, held: float) -> None:
        data: dict[str, Any] = {
            "dependency": hold.dependency,
            "state": state,
            "since": dt.datetime.fromtimestamp(hold.since, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "detail": hold.detail,
            "worker": self.info.id,
            "role": self.info.role,
            "message": hold_text(hold, self.settings.timezone),
        }
        if state == "ended":
            data["heldSeconds"] = round(held, 1)
        event = MonitoringEvent(
            event=HOLD_EVENT,
            timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            data=data,
            server_url=self.settings.server_url,
        )
        with contextlib.suppress(Exception):
            await self.announce(event)


H_HELD = "x-fila-held"
"""Times an ingest event went back to its queue during a hold (its `received` count is done)."""
