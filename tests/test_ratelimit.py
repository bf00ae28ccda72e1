"""The shared token bucket against the real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket


async def test_burst_admits_exactly_capacity(redis: aioredis.Redis, keys: Keys) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(
        capacity=50, refillPerMinute=0.001, instanceCapacity=1000, instanceRefillPerMinute=1
    )
    results = await asyncio.gather(*(bucket.acquire(f"i{n % 7}", cfg) for n in range(200)))
    assert sum(r.admitted for r in results) == 50
    refused = [r for r in results if not r.admitted]
    assert all(r.retryAfterMs > 0 for r in refused)


async def test_instance_share_caps_a_noisy_instance(redis: aioredis.Redis, keys: Keys) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(
        capacity=500, refillPerMinute=500, instanceCapacity=5, instanceRefillPerMinute=5
    )
    noisy = [await bucket.acquire("noisy", cfg) for _ in range(20)]
    assert sum(r.admitted for r in noisy) == 5
    quiet = await bucket.acquire("quiet", cfg)
    assert quiet.admitted


async def test_refill_over_time(redis: aioredis.Redis, keys: Keys) -> None:
    bucket = TokenBucket(redis, keys)
    cfg = RateLimitConfig(
        capacity=2, refillPerMinute=600, instanceCapacity=100, instanceRefillPerMinute=6000
    )
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
