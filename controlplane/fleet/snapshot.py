"""The fleet's rows, refreshed in the background once a second while someone is looking.

At 5,000 instances a full read is one HGETALL per instance (about 60 ms of CPU), so it runs
beside the requests, in slices that yield to them, and every page is cut from the last read:
several TUIs polling pages of 40 rows cost one read a second between them and never wait for
it. Share levels of every instance are refreshed the same way, only while a page sorts by them;
a page's own rows get fresh levels (one Lua call each).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from fila import logging as flog
from fila import stats
from fila.audiofilter import AudioFilter
from fila.configstore import ConfigStore
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket, weight_of
from fila.settings import Settings
from fila.views import InstanceRow

PERIOD_SECONDS = 1.0
"""Rows are at most this old (plus one read) while pages are asked for."""
IDLE_SECONDS = 30.0
"""Refreshing stops this long after the last page; the next one waits for a fresh read."""
SLICE = 500
"""Instances read per round trip; the loop serves requests between slices."""

log = flog.get("controlplane.fleet")


class RowSnapshot:
    """Counters and filters of the live instances; token levels filled in per page."""

    def __init__(
        self,
        settings: Settings,
        config: ConfigStore,
        counters: stats.Counters,
        bucket: TokenBucket,
    ) -> None:
        self._settings = settings
        self._config = config
        self._counters = counters
        self._bucket = bucket
        self._rows: list[InstanceRow] = []
        self._levels: dict[str, float] = {}
        self._read_at: float | None = None
        self._rows_mono = 0.0
        self._levels_at: float | None = None
        self._failure: BaseException | None = None
        self._fresh = asyncio.Event()
        self._asked = 0.0
        self._levels_asked = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def rows(self) -> tuple[list[InstanceRow], float]:
        """(rows without token levels, when they were read); waits only for a first read."""
        self._asked = time.monotonic()
        await self._first_read(lambda: self._read_at)
        assert self._read_at is not None
        return self._rows, self._read_at

    async def levels(self) -> dict[str, float]:
        """Every live instance's share level, at most a read old (for the `tokens` sort)."""
        self._levels_asked = self._asked = time.monotonic()
        await self._first_read(lambda: self._levels_at)
        return self._levels

    @property
    def refreshing(self) -> bool:
        """Whether the background read runs (someone asked in the last IDLE_SECONDS)."""
        return self._task is not None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _first_read(self, read_at: Callable[[], float | None]) -> None:
        if self._task is None:
            self._fresh = asyncio.Event()
            self._task = asyncio.create_task(self._refresh(), name="fleet-rows")
        while read_at() is None:
            self._wake.set()  # levels asked for the first time: read now, not next period
            event = self._fresh
            await event.wait()
            if read_at() is None and self._failure is not None:
                raise self._failure
            if read_at() is None and self._fresh is event:  # read before this was asked for
                self._fresh = asyncio.Event()

    async def _refresh(self) -> None:
        """Read, sleep out the period, again; stop once nobody asked for a while."""
        try:
            while time.monotonic() - self._asked < IDLE_SECONDS:
                began = time.monotonic()
                self._wake.clear()  # a wake during the read below calls for another at once
                try:
                    if self._read_at is None or began - self._rows_mono >= PERIOD_SECONDS / 2:
                        self._rows, self._read_at = await self._read(), time.time()
                        self._rows_mono = began
                    if began - self._levels_asked < IDLE_SECONDS:
                        self._levels, self._levels_at = await self._read_levels(), time.time()
                    self._failure = None
                except Exception as exc:  # Redis away: keep the last rows, try again
                    self._failure = exc
                    log.warning("fleet rows read failed", error=str(exc) or type(exc).__name__)
                self._fresh.set()
                with contextlib.suppress(TimeoutError):
                    pause = max(0.0, PERIOD_SECONDS - (time.monotonic() - began))
                    await asyncio.wait_for(self._wake.wait(), pause)
        finally:
            self._task = None
            self._read_at = self._levels_at = None
            self._rows, self._levels = [], {}

    async def with_levels(
        self, rows: list[InstanceRow], limits: RateLimitConfig
    ) -> list[InstanceRow]:
        """Copies of `rows` with their fair-share levels, in one round trip."""
        names = [r.instance for r in rows]
        levels = await self._bucket.peek_many(names, limits) if names else []
        out = []
        for row, level in zip(rows, levels, strict=True):
            weight = weight_of(limits, row.instance)
            out.append(
                InstanceRow(
                    **{
                        **{f: getattr(row, f) for f in row.__struct_fields__},
                        "tokens": round(level.instanceTokens, 3),
                        "tokenCapacity": limits.instanceCapacity * weight,
                        "weight": weight,
                        "sharePerMinute": round(level.sharePerMinute, 3),
                    }
                )
            )
        return out

    async def _read(self) -> list[InstanceRow]:
        await self._counters.forget_idle(self._settings.fleet_idle_seconds)
        seen = await self._counters.instances()
        filters = await self._config.all_filters()
        names = sorted(set(seen) | set(filters))
        limits = await self._config.ratelimit()
        default = AudioFilter(
            minDurationSeconds=self._settings.audio_min_seconds,
            maxDurationSeconds=self._settings.audio_max_seconds,
        )
        rows: list[InstanceRow] = []
        for at in range(0, len(names), SLICE):
            part = names[at : at + SLICE]
            counts = await self._counters.instance_counts(part)
            rows.extend(
                row_of(name, counts[name], filters.get(name, default), seen.get(name), limits)
                for name in part
            )
            await asyncio.sleep(0)
        return rows

    async def _read_levels(self) -> dict[str, float]:
        limits = await self._config.ratelimit()
        names = [r.instance for r in self._rows]
        out: dict[str, float] = {}
        for at in range(0, len(names), SLICE):
            part = names[at : at + SLICE]
            levels = await self._bucket.peek_many(part, limits)
            out.update((n, round(v.instanceTokens, 3)) for n, v in zip(part, levels, strict=True))
        return out


def row_of(
    name: str,
    counts: dict[str, int],
    rule: AudioFilter,
    last_seen: float | None,
    limits: RateLimitConfig,
) -> InstanceRow:
    """One instance's row from its counters and filter (token levels left to `with_levels`)."""
    weight = weight_of(limits, name)
    return InstanceRow(
        instance=name,
        received=counts[stats.RECEIVED],
        processed=counts[stats.PROCESSED],
        tooShort=counts[stats.TOO_SHORT],
        tooLong=counts[stats.TOO_LONG],
        rateLimited=counts[stats.RATE_LIMITED],
        deferred=counts[stats.DEFERRED],
        ingestFailed=counts[stats.INGEST_FAILED],
        delivered=counts[stats.DELIVERED],
        deliveryFailed=counts[stats.DELIVERY_FAILED],
        tokenCapacity=limits.instanceCapacity * weight,
        weight=weight,
        minDurationSeconds=rule.minDurationSeconds,
        maxDurationSeconds=rule.maxDurationSeconds,
        enabled=rule.enabled,
        lastSeen=last_seen,
    )
