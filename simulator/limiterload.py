"""One of the N processes of the limiter-accuracy bench: hammer the shared token bucket until a
deadline and report how many admissions it got, with Redis-clock bounds of its activity.

Run as `python -m simulator.limiterload PREFIX CAPACITY REFILL_PER_MIN START_AT SECONDS`.
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgspec
import redis.asyncio as aioredis

from fila import redisconn
from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket
from fila.settings import get_settings


class LoadReport(msgspec.Struct):
    admitted: int
    calls: int
    firstMs: float
    """Redis server time just before this process's first call."""
    lastMs: float


async def _server_ms(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return float(seconds) * 1000 + float(micros) / 1000


async def hammer(
    prefix: str, capacity: int, refill: float, start_at: float, seconds: float
) -> LoadReport:
    client = redisconn.connect(get_settings())
    try:
        bucket = TokenBucket(client, Keys(prefix))
        config = RateLimitConfig(
            capacity=capacity,
            refillPerMinute=refill,
            instanceCapacity=10**9,
        )
        await client.ping()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds
        admitted = 0
        calls = 0
        first = await _server_ms(client)

        async def lane(n: int) -> None:
            nonlocal admitted, calls
            while time.time() < deadline:
                # Several instances, so the fair-share path is exercised across processes too.
                result = await bucket.acquire(f"limiter-{n}", config)
                calls += 1
                admitted += int(result.admitted)

        await asyncio.gather(*(lane(n) for n in range(8)))
        last = await _server_ms(client)
        return LoadReport(admitted=admitted, calls=calls, firstMs=first, lastMs=last)
    finally:
        await client.aclose()


def main() -> None:
    prefix, capacity, refill, start_at, seconds = sys.argv[1:6]
    report = asyncio.run(
        hammer(prefix, int(capacity), float(refill), float(start_at), float(seconds))
    )
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")


if __name__ == "__main__":
    main()
