"""The fleet's rows, read from Redis at most once a second per process and shared by every page.

At 5,000 instances a full read is one pipelined HGETALL per instance (about 60 ms of CPU), so
several TUIs polling pages of 40 rows cost one read a second between them, not one each.
Token levels are read for the rows a page shows (a Lua call each), unless it sorts by them.
"""

from __future__ import annotations

import asyncio
import time

from fila import stats
from fila.audiofilter import AudioFilter
from fila.configstore import ConfigStore
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket, weight_of
from fila.settings import Settings
from fila.views import InstanceRow

FRESH_SECONDS = 1.0


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
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def rows(self) -> tuple[list[InstanceRow], float]:
        """(rows without token levels, when they were read); one read per second at most."""
        async with self._lock:
            if time.monotonic() - self._at >= FRESH_SECONDS:
                self._rows = await self._read()
                self._at = time.monotonic()
            return self._rows, time.time()

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
        counts = await self._counters.instance_counts(names)
        limits = await self._config.ratelimit()
        default = AudioFilter(
            minDurationSeconds=self._settings.audio_min_seconds,
            maxDurationSeconds=self._settings.audio_max_seconds,
        )
        rows = [
            row_of(name, counts[name], filters.get(name, default), seen.get(name), limits)
            for name in names
        ]
        return rows


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
