"""The token bucket shared by every worker: one atomic Lua call per admission, in Redis.

Two buckets are checked together: the global one (capacity/refill of the reference design)
and the instance's own, whose smaller share keeps one noisy instance from starving the rest.
Time comes from the Redis server, so every worker process agrees on it.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from fila.keys import Keys
from fila.models import RateLimitConfig

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gcap, grate = tonumber(ARGV[1]), tonumber(ARGV[2])
local icap, irate = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local function level(key, cap, rate)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then return cap end
  return math.min(cap, tokens + math.max(0, now - ts) * rate)
end
local g = level(KEYS[1], gcap, grate)
local i = level(KEYS[2], icap, irate)
local ok = 0
local wait = 0
if cost > 0 then
  if g >= cost and i >= cost then
    g = g - cost
    i = i - cost
    ok = 1
  else
    local gw = 0
    local iw = 0
    if g < cost then gw = (cost - g) / grate end
    if i < cost then iw = (cost - i) / irate end
    wait = math.ceil(math.max(gw, iw))
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(g), 'ts', now)
redis.call('HSET', KEYS[2], 'tokens', tostring(i), 'ts', now)
redis.call('PEXPIRE', KEYS[2], math.min(math.ceil(icap / irate), 1e12) + 60000)
return {ok, tostring(g), tostring(i), wait}
"""


class Admission(msgspec.Struct, frozen=True):
    admitted: bool
    globalTokens: float
    instanceTokens: float
    retryAfterMs: int
    """When refused: how long until both buckets hold a token again."""


class TokenBucket:
    """Admission against the global and per-instance buckets, atomically."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(_SCRIPT)

    async def acquire(self, instance: str, config: RateLimitConfig, cost: int = 1) -> Admission:
        raw = await self._script(keys=self._keys_for(instance), args=_args(config, cost))
        return _admission(raw)

    async def peek(self, instance: str, config: RateLimitConfig) -> Admission:
        """Current levels, taking nothing."""
        return await self.acquire(instance, config, cost=0)

    async def peek_many(self, instances: list[str], config: RateLimitConfig) -> list[Admission]:
        """Levels of many instance buckets in one round trip (the TUI's 500 rows)."""
        pipe = self._redis.pipeline(transaction=False)
        for instance in instances:
            await self._script(keys=self._keys_for(instance), args=_args(config, 0), client=pipe)
        return [_admission(raw) for raw in await pipe.execute()]

    async def reset(self) -> None:
        """Fill the global bucket (after a capacity change, for instance)."""
        await self._redis.delete(self._keys.bucket_global)

    def _keys_for(self, instance: str) -> list[str]:
        return [self._keys.bucket_global, self._keys.bucket_instance(instance)]


def _args(config: RateLimitConfig, cost: int) -> list[Any]:
    return [
        config.capacity,
        config.refillPerMinute / 60000.0,
        config.instanceCapacity,
        config.instanceRefillPerMinute / 60000.0,
        cost,
    ]


def _admission(raw: Any) -> Admission:
    ok, g, i, wait = raw
    return Admission(
        admitted=int(ok) == 1,
        globalTokens=float(g),
        instanceTokens=float(i),
        retryAfterMs=int(wait),
    )
