"""Guessing throttled: failed credentials counted per client address in Redis, so every replica
agrees. The API key guard uses it; the ingest tokens can use it the same way (their own `scope`).

A fixed window opens at an address's first failure; within it the first `limit` failures are
answered as usual (401), the rest get 429 with `Retry-After` (seconds until the window closes).
Only failures are counted: a right credential never reads or writes the count.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fila import logging as flog

log = flog.get("controlplane.throttle")

_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


def key(prefix: str, scope: str, address: str) -> str:
    """One counter per deployment prefix, credential kind and client address."""
    return f"{prefix}throttle:{scope}:{address}"


async def failure(
    redis: aioredis.Redis, prefix: str, scope: str, address: str, limit: int, window: int
) -> int:
    """Count one failed credential; seconds to wait (Retry-After) once past `limit`, else 0.

    Redis down: the failure is not counted (0), so a right key keeps working meanwhile."""
    try:
        count, ttl_ms = await redis.eval(_FAIL, 1, key(prefix, scope, address), str(window * 1000))
    except RedisError as exc:
        log.warning("throttle count unavailable", scope=scope, error=str(exc))
        return 0
    if int(count) <= limit:
        return 0
    return max(1, -(-int(ttl_ms) // 1000))
