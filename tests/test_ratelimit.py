"""The shared token bucket and its fair sharing, against the real Redis."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis.asyncio as aioredis

from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket
from simulator import fairness


async def test_burst_admits_exactly_capacity(redis: aioredis.Redis, keys: Keys) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(capacity=50, refillPerMinute=0.001, instanceCapacity=1000)
    results = await asyncio.gather(*(bucket.acquire(f"i{n % 7}", cfg) for n in range(200)))
    assert sum(r.admitted for r in results) == 50
    refused = [r for r in results if not r.admitted]
    assert all(r.retryAfterMs > 0 for r in refused)


async def test_one_instance_alone_is_never_refused_while_the_global_has_room(
    redis: aioredis.Redis, keys: Keys
) -> None:
    """The defect fixed: 60 notes from one instance with the defaults, 480 tokens left."""
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig()
    results = [await bucket.acquire("busy", cfg) for _ in range(60)]
    assert all(r.admitted for r in results)
    assert {r.zone for r in results} == {"free"}
    assert results[-1].globalTokens >= 439


async def test_at_the_reserve_only_instances_within_their_share_draw(
    redis: aioredis.Redis, keys: Keys
) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(
        capacity=100, refillPerMinute=0.001, reservePercent=30, instanceCapacity=5
    )
    noisy = [await bucket.acquire("noisy", cfg) for _ in range(80)]
    # 70 above the reserve; its share was spent by those draws, so none of the reserve.
    assert sum(r.admitted for r in noisy) == 70
    assert noisy[70].retryAfterMs > 0 and noisy[70].zone == "refused"
    quiet = [await bucket.acquire("quiet", cfg) for _ in range(7)]
    assert [r.admitted for r in quiet] == [True] * 5 + [False] * 2
    assert {r.zone for r in quiet[:5]} == {"share"}


async def test_refill_over_time(redis: aioredis.Redis, keys: Keys) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(capacity=2, refillPerMinute=600, instanceCapacity=100)
    assert (await bucket.acquire("a", cfg)).admitted
    assert (await bucket.acquire("a", cfg)).admitted
    denied = await bucket.acquire("a", cfg)
    assert not denied.admitted and 0 < denied.retryAfterMs <= 100
    await asyncio.sleep(0.25)  # 600/min = 10/s: at least two tokens back
    assert (await bucket.acquire("a", cfg)).admitted


async def test_peek_takes_nothing(redis: aioredis.Redis, keys: Keys) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(capacity=3, refillPerMinute=0.001)
    await bucket.acquire("a", cfg)
    levels = await bucket.peek_many(["a", "b"], cfg)
    assert round(levels[0].globalTokens) == 2
    assert round((await bucket.peek("a", cfg)).globalTokens) == 2
    # A peek does not make "b" active: the refill is still shared by "a" alone.
    assert levels[0].activeWeight == 1 and levels[1].activeWeight == 2


async def test_the_share_follows_the_active_instances_and_their_weights(
    redis: aioredis.Redis, keys: Keys
) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(refillPerMinute=600, weights={"heavy": 3}, activeWindowSeconds=1)
    for name in ("a", "b", "heavy"):
        await bucket.acquire(name, cfg)
    a, heavy = await bucket.peek_many(["a", "heavy"], cfg)
    assert a.activeWeight == 5
    assert (a.sharePerMinute, heavy.sharePerMinute) == (pytest.approx(120), pytest.approx(360))
    await asyncio.sleep(1.2)  # the window passes: only the next sender is active
    alone = await bucket.acquire("b", cfg)
    assert (alone.activeWeight, alone.sharePerMinute) == (1, pytest.approx(600))


async def test_contention_keeps_normal_instances_whole_and_gives_the_hot_one_the_rest(
    redis: aioredis.Redis, keys: Keys
) -> None:
    """50 instances under their share, one at 10× their rate, a binding 100/s global limit."""
    cfg = RateLimitConfig(capacity=100, refillPerMinute=6000, reservePercent=30)
    report = await fairness.contention(
        redis, keys, cfg, normals=50, normal_per_second=1.8, hot_factor=10, seconds=12
    )
    assert report.normalSent + report.hotSent > report.expected  # the limit really bound
    assert report.worstNormalShare >= 0.95, report
    assert report.jainNormals >= 0.98, report
    assert report.conservationErrorPercent <= 0.5, report
    # The hot instance got all the rest: nothing unspent but the reserve still held.
    assert report.expected - report.admitted <= cfg.capacity * cfg.reservePercent / 100 + 3
    assert report.hotAdmitted > report.hotSent * 0.2, report


async def test_weight_three_gets_three_times_the_share_of_weight_one(
    redis: aioredis.Redis, keys: Keys
) -> None:
    cfg = RateLimitConfig(
        capacity=40,
        refillPerMinute=2400,
        reservePercent=20,
        instanceCapacity=2,
        weights={"w1": 1, "w3": 3},
    )
    report = await fairness.weighted(redis, keys, cfg, per_second=120, seconds=10)
    assert 2.85 <= report.ratio <= 3.15, report


async def test_deferred_events_come_back_interleaved_not_one_backlog_first(
    redis: aioredis.Redis, keys: Keys
) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(
        capacity=10, refillPerMinute=60, reservePercent=0, policy="defer", instanceCapacity=1
    )
    await bucket.acquire("quiet", cfg)  # both active: each has half the refill (1 per 2 s)
    backlog = [await bucket.acquire("hot", cfg) for _ in range(30)]
    refused = [r for r in backlog if not r.admitted]
    waits = [r.retryAfterMs for r in refused]
    assert len(refused) == 21 and waits == sorted(waits)
    # The hot backlog is spaced at its share (2 s apart), not told to come back all at once.
    assert all(1900 <= b - a <= 2100 for a, b in itertools.pairwise(waits))
    quiet = await bucket.acquire("quiet", cfg)
    assert not quiet.admitted and quiet.retryAfterMs < waits[1]
