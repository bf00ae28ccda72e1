"""Fairness scenarios against the shared token bucket: what `fila bench` reports and tests assert.

Each one drives `fila.ratelimit.TokenBucket` on the real Redis with timed arrivals, so the
figures are the limiter's own, free of pipeline noise.
"""

from __future__ import annotations

import asyncio
import random
import time

import msgspec
import redis.asyncio as aioredis

from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket


class Tally(msgspec.Struct, kw_only=True):
    sent: int = 0
    admitted: int = 0

    @property
    def share(self) -> float:
        return self.admitted / self.sent if self.sent else 1.0


class ContentionReport(msgspec.Struct, kw_only=True):
    seconds: float
    """Server time from the first to the last admission call."""
    normals: int
    normalSent: int
    normalAdmitted: int
    worstNormalShare: float
    jainNormals: float
    hotSent: int
    hotAdmitted: int
    admitted: int
    """Every admission, the hot instance's opening draws included."""
    expected: float
    """capacity + refill·t: every token the bucket produced."""
    left: float
    """Tokens still in the bucket at the end (the reserve kept for in-share instances)."""
    conservationErrorPercent: float
    """|admitted + left − expected| ÷ expected: tokens neither lost nor invented."""
    unspentPercent: float
    """(expected − admitted) ÷ expected: what was produced and not handed out."""


class WeightReport(msgspec.Struct, kw_only=True):
    seconds: float
    admitted: dict[str, int]
    weights: dict[str, int]
    ratio: float
    """Admitted of the heavier instance ÷ admitted of the lighter."""


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all are equal, 1/n when one has everything."""
    if not values:
        return 1.0
    total = sum(values)
    squares = sum(v * v for v in values)
    return (total * total) / (len(values) * squares) if squares else 1.0


async def _server_ms(redis: aioredis.Redis) -> float:
    seconds, micros = await redis.time()
    return float(seconds) * 1000 + float(micros) / 1000


async def _poisson(
    bucket: TokenBucket,
    config: RateLimitConfig,
    instance: str,
    per_second: float,
    until: float,
    rng: random.Random,
    tally: Tally,
) -> None:
    """Requests at exponential intervals (independent senders) until the deadline."""
    while True:
        await asyncio.sleep(rng.expovariate(per_second))
        if time.monotonic() >= until:
            return
        tally.sent += 1
        tally.admitted += int((await bucket.acquire(instance, config)).admitted)


async def _drain(
    redis: aioredis.Redis, keys: Keys, config: RateLimitConfig, instance: str
) -> tuple[int, float]:
    """`instance` takes tokens until refused: (taken, server ms of the first call, when full)."""
    taken, t0 = 0, 0.0
    while (await TokenBucket(redis, keys).acquire(instance, config)).admitted:
        if taken == 0:
            t0 = float(await redis.hget(keys.bucket_global, "ts") or 0)
        taken += 1
    return taken, t0


async def burst(
    redis: aioredis.Redis, keys: Keys, config: RateLimitConfig, sent: int, seconds: float
) -> Tally:
    """One instance sends `sent` requests evenly over `seconds` while the fleet is idle."""
    bucket = TokenBucket(redis, keys)
    tally = Tally()
    gap = seconds / sent
    for _ in range(sent):
        tally.sent += 1
        tally.admitted += int((await bucket.acquire("burst", config)).admitted)
        await asyncio.sleep(gap)
    return tally


async def contention(
    redis: aioredis.Redis,
    keys: Keys,
    config: RateLimitConfig,
    *,
    normals: int,
    normal_per_second: float,
    hot_factor: float,
    seconds: float,
    seed: int = 7,
) -> ContentionReport:
    """`normals` instances under their share and one at `hot_factor` times their rate.

    The hot instance opens by taking all it can, so the run starts contended; each instance's
    arrivals are independent (Poisson).
    """
    bucket = TokenBucket(redis, keys)
    rng = random.Random(seed)
    opened, t0 = await _drain(redis, keys, config, "hot")
    until = time.monotonic() + seconds
    tallies = {f"normal-{n:03d}": Tally() for n in range(normals)}
    hot = Tally()
    await asyncio.gather(
        *(
            _poisson(bucket, config, name, normal_per_second, until, random.Random(rng.random()), t)
            for name, t in tallies.items()
        ),
        _poisson(
            bucket, config, "hot", normal_per_second * hot_factor, until, random.Random(seed), hot
        ),
    )
    raw_tokens, raw_ts = await redis.hmget(keys.bucket_global, ["tokens", "ts"])
    left, last = float(raw_tokens or 0), float(raw_ts or 0)
    span = (last - t0) / 1000
    expected = config.capacity + config.refillPerMinute / 60 * span
    admitted = opened + hot.admitted + sum(t.admitted for t in tallies.values())
    shares = [t.share for t in tallies.values()]
    return ContentionReport(
        seconds=round(span, 3),
        normals=normals,
        normalSent=sum(t.sent for t in tallies.values()),
        normalAdmitted=sum(t.admitted for t in tallies.values()),
        worstNormalShare=round(min(shares), 4),
        jainNormals=round(jain(shares), 5),
        hotSent=hot.sent,
        hotAdmitted=hot.admitted,
        admitted=admitted,
        expected=round(expected, 1),
        left=round(left, 2),
        conservationErrorPercent=round(abs(admitted + left - expected) / expected * 100, 3),
        unspentPercent=round((expected - admitted) / expected * 100, 3),
    )


async def weighted(
    redis: aioredis.Redis,
    keys: Keys,
    config: RateLimitConfig,
    *,
    per_second: float,
    seconds: float,
) -> WeightReport:
    """Every weighted instance of `config` sends at `per_second`, far above the global refill."""
    bucket = TokenBucket(redis, keys)
    names = sorted(config.weights, key=lambda n: config.weights[n])
    await _drain(redis, keys, config, names[-1])
    t0 = await _server_ms(redis)
    until = time.monotonic() + seconds
    tallies = {name: Tally() for name in names}
    await asyncio.gather(
        *(
            _poisson(bucket, config, name, per_second, until, random.Random(i), tallies[name])
            for i, name in enumerate(names)
        )
    )
    span = (await _server_ms(redis) - t0) / 1000
    admitted = {name: t.admitted for name, t in tallies.items()}
    light, heavy = admitted[names[0]], admitted[names[-1]]
    return WeightReport(
        seconds=round(span, 3),
        admitted=admitted,
        weights=dict(config.weights),
        ratio=round(heavy / light, 4) if light else float("inf"),
    )
