"""The fleet rows a control plane cuts pages from: read in the background while asked for,
share levels read in one call per slice, nothing read once nobody looks."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from controlplane.fleet import snapshot
from controlplane.fleet.snapshot import RowSnapshot
from fila import redisconn
from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket
from fila.settings import Settings
from fila.stats import Counters
from tests.support import wait_for


def _snapshot(settings: Settings, redis: aioredis.Redis, keys: Keys) -> RowSnapshot:
    counters = Counters(redis, keys, settings.timezone)
    return RowSnapshot(
        settings, ConfigStore(redis, keys, settings), counters, TokenBucket(redis, keys)
    )


async def test_rows_follow_the_counters_and_stop_being_read_when_nobody_asks(
    settings: Settings, redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "IDLE_SECONDS", 2.0)
    counters = Counters(redis, keys, settings.timezone)
    for n in range(1200):  # more than one slice
        await counters.bump(f"inst-{n:04d}", {"received": n % 7})
    snap = _snapshot(settings, redis, keys)
    try:
        rows, read_at = await snap.rows()
        assert len(rows) == 1200 and snap.refreshing
        assert [r.received for r in rows[:8]] == [0, 1, 2, 3, 4, 5, 6, 0]
        await counters.bump("late-comer", {"received": 5})

        async def seen() -> bool:
            rows, _ = await snap.rows()
            return any(r.instance == "late-comer" and r.received == 5 for r in rows)

        await wait_for(seen, timeout=5)
        assert (await snap.rows())[1] > read_at
        await wait_for(lambda: not snap.refreshing, timeout=6)  # idle: the reads stop
        rows, _ = await snap.rows()  # and the next ask starts them with a fresh read
        assert len(rows) == 1201 and snap.refreshing
    finally:
        await snap.close()
    assert not snap.refreshing


async def test_share_levels_of_every_instance_come_from_one_call_per_slice(
    settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    counters = Counters(redis, keys, settings.timezone)
    names = [f"inst-{n:04d}" for n in range(700)]
    for name in names:
        await counters.bump(name, {"received": 1})
    # Contended: a bucket at its reserve, so shares drain; "busy" drew 6 of its 10.
    limits = RateLimitConfig(capacity=100, refillPerMinute=6, instanceCapacity=10)
    bucket = TokenBucket(redis, keys)
    for _ in range(6):
        assert (await bucket.acquire("inst-0003", limits)).admitted
    snap = _snapshot(settings, redis, keys)
    await ConfigStore(redis, keys, settings).set_ratelimit(limits)
    try:
        levels = await snap.levels()
        assert len(levels) == 700
        assert levels["inst-0003"] == pytest.approx(4, abs=0.5)
        assert levels["inst-0100"] == pytest.approx(10)
        one = await bucket.peek("inst-0003", limits)
        [many] = await bucket.peek_many(["inst-0003"], limits)
        assert many.instanceTokens == pytest.approx(one.instanceTokens, abs=0.2)
        assert many.sharePerMinute == pytest.approx(one.sharePerMinute)
        assert many.activeWeight == one.activeWeight
    finally:
        await snap.close()


async def test_a_first_read_that_cannot_reach_redis_says_so(settings: Settings) -> None:
    away = settings.replace(redis_url="redis://127.0.0.1:1/0", startup_wait_seconds=0.5)
    redis = redisconn.connect(away)
    snap = _snapshot(away, redis, Keys(away.redis_prefix))
    try:
        with pytest.raises(Exception, match=r"(?i)connect"):
            await snap.rows()
    finally:
        await snap.close()
        await redis.aclose()
