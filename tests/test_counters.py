"""Counters in a real Redis: every event counted, the bookkeeping around them sent sparingly."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from fila import stats
from fila.keys import Keys
from fila.settings import Settings
from fila.stats import Counters


async def test_every_event_counts_but_last_seen_and_expiry_go_out_once_a_period(
    settings: Settings, redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Periods a stalling host stays below, and short enough to wait out here.
    monkeypatch.setattr(stats, "SEEN_REFRESH_SECONDS", 2.0)
    monkeypatch.setattr(stats, "EXPIRY_REFRESH_SECONDS", 4.0)
    counters = Counters(redis, keys, settings.timezone, retention_days=2)
    await counters.bump("steady", {stats.RECEIVED: 1, stats.DELIVERED: 1})
    first_seen = await redis.zscore(keys.instances, "steady")
    day = keys.processed_day(stats.today(settings.timezone))
    await redis.expire(keys.stats_instance("steady"), 100)  # as if the last refresh were old
    await redis.expire(day, 100)
    for _ in range(49):
        await counters.bump("steady", {stats.RECEIVED: 1, stats.DELIVERED: 1})
    got = await redis.hgetall(keys.stats_instance("steady"))
    assert int(got[b"received"]) == 50 and int(got[b"delivered"]) == 50
    assert int(await redis.get(day) or 0) == 50
    assert await redis.zscore(keys.instances, "steady") == first_seen
    assert 0 < await redis.ttl(keys.stats_instance("steady")) <= 100
    assert 0 < await redis.ttl(day) <= 100
    await asyncio.sleep(2.1)  # the last-seen period, not yet the expiry's
    await counters.bump("steady", {stats.RECEIVED: 1})
    assert (await redis.zscore(keys.instances, "steady") or 0) > (first_seen or 0)
    assert 0 < await redis.ttl(keys.stats_instance("steady")) <= 100
    await asyncio.sleep(2.0)
    await counters.bump("steady", {stats.RECEIVED: 1, stats.DELIVERED: 1})
    assert await redis.ttl(keys.stats_instance("steady")) > 2 * 86400 - 60
    assert await redis.ttl(day) > 2 * 86400


async def test_the_bookkeeping_memory_stays_bounded_across_many_instances(
    settings: Settings, redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats, "_SENT_KEPT", 100)
    monkeypatch.setattr(stats, "EXPIRY_REFRESH_SECONDS", 0.2)
    counters = Counters(redis, keys, settings.timezone)
    for n in range(150):
        await counters.bump(f"wave-a-{n}", {stats.RECEIVED: 1})
    await asyncio.sleep(0.3)
    for wave in "bcd":  # each wave past the previous one's expiry period
        for n in range(150):
            await counters.bump(f"wave-{wave}-{n}", {stats.RECEIVED: 1})
        assert len(counters._sent) <= 300
        await asyncio.sleep(0.3)
    assert not any(name.startswith("wave-a-") for name in counters._sent)
    assert len(await redis.zrange(keys.instances, 0, -1)) == 600
