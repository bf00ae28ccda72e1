"""The fleet's rows, refreshed in the background once a second while someone is looking.

At 5,000 instances a full read is one HGETALL per instance (about 60 ms of CPU) plus every
share level (one Lua call per 500 instances, about 15 ms), so it runs beside the requests, in
slices that yield to them, and every page is cut from the last read: several TUIs polling
pages of 40 rows cost one read a second between them and wait for none but the first. A
page's own rows get fresh levels (one call).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

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
        self._failure: BaseException | None = None
        self._fresh = asyncio.Event()
        self._asked = 0.0
        self._task: asyncio.Task[None] | None = None

    async def rows(self) -> tuple[list[InstanceRow], float]:
        """(rows without token levels, when they were read); waits only for a first read."""
        await self._first_read()
        assert self._read_at is not None
        return self._rows, self._read_at

    async def levels(self) -> dict[str, float]:
        """Every live instance's share level, as of the last read (for the `tokens` sort)."""
        await self._first_read()
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

    async def _first_read(self) -> None:
        self._asked = time.monotonic()
        if self._task is None:
            self._fresh = asyncio.Event()
            self._task = asyncio.create_task(self._refresh(), name="fleet-rows")
        if self._read_at is None:
            await self._fresh.wait()
            if self._read_at is None and self._failure is not None:
                raise self._failure

    async def _refresh(self) -> None:
        """Read, sleep out the period, again; stop once nobody asked for a while."""
        try:
            while time.monotonic() - self._asked < IDLE_SECONDS:
                began = time.monotonic()
                try:
                    rows = await self._read()
                    self._levels = await self._read_levels(rows)
                    self._rows, self._read_at = rows, time.time()
                    self._failure = None
                except Exception as exc:  # Redis away: keep the last rows, try again
                    self._failure = exc
                    log.warning("fleet rows read failed", error=str(exc) or type(exc).__name__)
                self._fresh.set()
                await asyncio.sleep(max(0.0, PERIOD_SECONDS - (time.monotonic() - began)))
        finally:
            self._task = None
            self._read_at = None
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

    async def _read_levels(self, rows: list[InstanceRow]) -> dict[str, float]:
        limits = await self._config.ratelimit()
        names = [r.instance for r in rows]
        out: dict[str, float] = {}
        for at in range(0, len(names), SLICE):
            part = names[at : at + SLICE]
            levels = await self._bucket.peek_many(part, limits)
            out.update((n, round(v.instanceTokens, 3)) for n, v in zip(part, levels, strict=True))
            await asyncio.sleep(0)
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
