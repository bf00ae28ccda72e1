"""A lease in Redis: one owner token holds a key until it lets go or stops renewing it.

The stats reporter (one per fleet) and the S3 cleanup (one run at a time) both need it; a
companion hash (the cleanup's progress) lives and dies with the lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import redis.asyncio as aioredis

# KEYS[1] lease; ARGV token, ttl ms -> 1 when this token holds the lease afterwards
_HOLD = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] lease, KEYS[2] companion hash (optional); ARGV token, ttl ms, field, value, ...
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[2] and #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""

# KEYS[1] lease (and the companion); ARGV token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', unpack(KEYS))
  return 1
end
return 0
"""


class Lease:
    """Owned by `token` while it holds `key`; the lease expires `ttl_ms` after its last renewal."""

    def __init__(
        self,
        redis: aioredis.Redis,
        key: str,
        ttl_ms: int,
        companion: str | None = None,
        token: str | None = None,
    ) -> None:
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = token or uuid.uuid4().hex
        self._keys = [key] if companion is None else [key, companion]
        self._redis = redis
        self._hold = redis.register_script(_HOLD)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        """Take the lease only if nobody holds it (a new run, not a re-entry)."""
        return bool(await self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def hold(self) -> bool:
        """Take it if free, keep it if ours: for a role one process plays at a time."""
        return bool(await self._hold(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def renew(self, fields: Mapping[str, str | int] | None = None) -> bool:
        """Keep it (and write `fields` into the companion) only while it is still ours."""
        flat: list[str | int] = []
        for name, value in (fields or {}).items():
            flat += [name, value]
        return bool(await self._renew(keys=self._keys, args=[self.token, self.ttl_ms, *flat]))

    async def release(self) -> bool:
        """Let go (the companion too) if still ours; a lease lost meanwhile is left alone."""
        return bool(await self._release(keys=self._keys, args=[self.token]))
